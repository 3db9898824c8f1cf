using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// The daemon's walks of trees a sandbox or an image wrote (<see cref="Files.Beneath"/>, and
/// <see cref="Files.AllocatedBytesBeneath"/> that meters a writable layer and sizes layers): a symbolic link is an entry
/// of its own and is never entered, wherever it points. Every enumeration here takes a bounded number of entries, so a
/// walk that went through the links fails its assertion instead of running on. And a snapshot's removal of the agent's
/// sockets from a layer's /tmp, which the sandbox may have made a link.
/// </summary>
public sealed class TreeWalkTests : IDisposable
{
    private const int Bound = 10_000;
    private const long OutsideBytes = 8L << 20;
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("paddock-treewalk-");

    private string Tree => Path.Combine(_dir.FullName, "tree");

    private string Outside => Path.Combine(_dir.FullName, "outside");

    public TreeWalkTests()
    {
        // Outside the tree: a directory with 8 MiB on disk (preallocated, so its blocks count).
        Directory.CreateDirectory(Outside);
        using (new FileStream(Path.Combine(Outside, "allocated"), new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, PreallocationSize = OutsideBytes }))
        {
        }
        // The tree: two files, one of them with a second hard link, and links out of it, to the root, and to itself.
        Directory.CreateDirectory(Path.Combine(Tree, "sub"));
        File.WriteAllBytes(Path.Combine(Tree, "file"), new byte[4096]);
        File.WriteAllBytes(Path.Combine(Tree, "sub", "inner"), new byte[4096]);
        File.CreateSymbolicLink(Path.Combine(Tree, "to-outside"), Outside);
        File.CreateSymbolicLink(Path.Combine(Tree, "to-root"), "/");
        File.CreateSymbolicLink(Path.Combine(Tree, "sub", "loop"), Tree);
        File.CreateSymbolicLink(Path.Combine(Tree, "file-link"), Path.Combine(Outside, "allocated"));
    }

    [Fact]
    public void A_walk_lists_links_as_entries_and_never_enters_them()
    {
        var entries = Files.Beneath(Tree).Take(Bound).Select(p => Path.GetRelativePath(Tree, p)).Order(StringComparer.Ordinal).ToList();

        Assert.Equal(["file", "file-link", "sub", "sub/inner", "sub/loop", "to-outside", "to-root"], entries);
    }

    [Fact]
    public void A_walk_of_files_only_leaves_out_directories_and_links()
    {
        var files = Files.Beneath(Tree, filesOnly: true).Take(Bound).Select(p => Path.GetRelativePath(Tree, p)).Order(StringComparer.Ordinal).ToList();

        Assert.Equal(["file", "sub/inner"], files);
    }

    [Fact]
    public async Task Allocated_bytes_count_the_tree_and_not_what_its_links_point_at()
    {
        var ln = await ExternalCommand.RunAsync("ln", [Path.Combine(Tree, "sub", "inner"), Path.Combine(Tree, "sub", "inner-hard")], TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
        Assert.True(ln.Succeeded, ln.Describe());

        var tree = Files.AllocatedBytesBeneath(Tree);
        var outside = Files.AllocatedBytesBeneath(Outside);

        // The preallocation counts where it lives, so counting it through a link would show here.
        Assert.True(outside >= OutsideBytes, $"the outside directory has {outside} bytes allocated");
        // Two 4 KiB files (the hard link once), the directories and the links: far below the 8 MiB outside.
        Assert.True(tree >= 2 * 4096, $"the tree has {tree} bytes allocated");
        Assert.True(tree < OutsideBytes / 2, $"the tree counted {tree} bytes: its links were followed");
    }

    [Fact]
    public void Allocated_bytes_of_a_directory_that_went_away_are_zero()
    {
        Assert.Equal(0, Files.AllocatedBytesBeneath(Path.Combine(_dir.FullName, "never-made")));
    }

    [Fact]
    public void A_cancelled_count_stops()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();

        Assert.Throws<OperationCanceledException>(() => Files.AllocatedBytesBeneath(Tree, cancelled.Token));
    }

    [Fact]
    public void A_snapshot_removes_the_agents_sockets_from_its_own_tmp_and_never_through_a_link()
    {
        // The sandbox made /tmp a link to a directory outside the layer, where sockets of that name live.
        var layer = Path.Combine(_dir.FullName, "layer");
        Directory.CreateDirectory(layer);
        var elsewhere = Path.Combine(Outside, ".paddock-agent-1.sock");
        File.WriteAllText(elsewhere, "");
        File.CreateSymbolicLink(Path.Combine(layer, "tmp"), Outside);

        SandboxFilesystem.RemoveAgentLeftovers(layer);

        Assert.True(File.Exists(elsewhere));

        // A layer's own /tmp loses them, and keeps everything else.
        File.Delete(Path.Combine(layer, "tmp"));
        Directory.CreateDirectory(Path.Combine(layer, "tmp"));
        File.WriteAllText(Path.Combine(layer, "tmp", ".paddock-agent-2.sock"), "");
        File.WriteAllText(Path.Combine(layer, "tmp", "kept"), "");

        SandboxFilesystem.RemoveAgentLeftovers(layer);

        Assert.Equal(["kept"], Directory.EnumerateFileSystemEntries(Path.Combine(layer, "tmp")).Select(Path.GetFileName));
    }

    public void Dispose() => _dir.Delete(recursive: true);
}
