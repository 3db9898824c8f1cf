using Paddock.Daemon.Native;
using Paddock.Daemon.Templates;
using static Paddock.Daemon.Tests.Runtimes.TestEnvironment;

namespace Paddock.Daemon.Tests.Templates;

/// <summary>
/// A real overlayfs upper directory (made by mounting an overlay and changing files through it, as a sandbox does)
/// copied into a layer, then mounted as a lower layer above the original: the merged view must show exactly the
/// changes, deletions included. Needs root (mount, trusted.* xattrs).
/// </summary>
public sealed class LayerCopyTests : IDisposable
{
    private const uint S_IFCHR = 0x2000;
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("paddock-layercopy-");
    private readonly List<string> _mounts = [];

    public LayerCopyTests() => RequireRootAndRunc();

    private string P(string relative) => Path.Combine(_dir.FullName, relative);

    [Fact]
    public async Task Whiteouts_opaque_directories_and_hard_links_survive_and_the_copy_shares_no_inode()
    {
        // The template: a file to delete, a directory to replace, a file to keep, a file to change.
        Directory.CreateDirectory(P("lower/gone-dir/sub"));
        File.WriteAllText(P("lower/gone-dir/sub/old"), "old");
        Directory.CreateDirectory(P("lower/replaced"));
        File.WriteAllText(P("lower/replaced/old"), "old");
        File.WriteAllText(P("lower/deleted"), "deleted");
        File.WriteAllText(P("lower/kept"), "kept");
        File.WriteAllText(P("lower/changed"), "before");
        foreach (var d in (string[])["upper", "work", "merged"])
        {
            Directory.CreateDirectory(P(d));
        }
        Mount(P("merged"), $"lowerdir={P("lower")},upperdir={P("upper")},workdir={P("work")}");

        // The sandbox's changes, through the overlay.
        File.Delete(P("merged/deleted"));
        Directory.Delete(P("merged/gone-dir"), recursive: true);
        Directory.Delete(P("merged/replaced"), recursive: true);
        Directory.CreateDirectory(P("merged/replaced"));
        File.WriteAllText(P("merged/replaced/new"), "new");
        File.WriteAllText(P("merged/changed"), "after");
        File.WriteAllText(P("merged/added"), "added");
        var ln = await ExternalCommand.RunAsync("ln", [P("merged/added"), P("merged/added.link")], Timeout(TimeSpan.FromSeconds(10)));
        Assert.True(ln.Succeeded, ln.Describe());

        var bytes = await LayerCopy.CopyAsync(P("upper"), P("layer"), Timeout(TimeSpan.FromSeconds(60)));
        Assert.True(bytes > 0);

        // Deletions are character devices 0/0 in the copy, the replaced directory is opaque.
        var whiteout = Files.Stat(P("layer/deleted"));
        Assert.Equal(S_IFCHR, whiteout.Type);
        var rdev = await ExternalCommand.RunAsync("stat", ["--format=%t:%T", P("layer/deleted")], Timeout(TimeSpan.FromSeconds(10)));
        Assert.Equal("0:0", rdev.StandardOutput.Trim());
        Assert.Equal(S_IFCHR, Files.Stat(P("layer/gone-dir")).Type);
        Assert.Equal("y"u8.ToArray(), Files.GetAttribute(P("layer/replaced"), "trusted.overlay.opaque"));

        // New inodes everywhere (a later write to the upper directory cannot reach the layer), hard links kept.
        foreach (var name in (string[])["added", "changed", "replaced/new"])
        {
            Assert.NotEqual(Files.Stat(P("upper/" + name)).Inode, Files.Stat(P("layer/" + name)).Inode);
        }
        Assert.Equal(Files.Stat(P("layer/added")).Inode, Files.Stat(P("layer/added.link")).Inode);
        File.WriteAllText(P("merged/added"), "written after the snapshot");
        Assert.Equal("added", File.ReadAllText(P("layer/added")));

        // The layer on top of the template shows exactly the sandbox's state at the copy.
        Directory.CreateDirectory(P("view"));
        Mount(P("view"), $"lowerdir={P("layer")}:{P("lower")}");
        Assert.False(File.Exists(P("view/deleted")));
        Assert.False(Directory.Exists(P("view/gone-dir")));
        Assert.Equal(["new"], Directory.GetFileSystemEntries(P("view/replaced")).Select(Path.GetFileName));
        Assert.Equal("kept", File.ReadAllText(P("view/kept")));
        Assert.Equal("after", File.ReadAllText(P("view/changed")));
        Assert.Equal("added", File.ReadAllText(P("view/added")));
    }

    [Fact]
    public async Task A_failed_copy_leaves_nothing_behind()
    {
        await Assert.ThrowsAsync<IOException>(() => LayerCopy.CopyAsync(P("missing"), P("layer"), Timeout(TimeSpan.FromSeconds(30))));
        Assert.False(Directory.Exists(P("layer")));
        Directory.CreateDirectory(P("exists"));
        Directory.CreateDirectory(P("source"));
        var error = await Assert.ThrowsAsync<IOException>(() => LayerCopy.CopyAsync(P("source"), P("exists"), Timeout(TimeSpan.FromSeconds(30))));
        Assert.Contains("exists already", error.Message, StringComparison.Ordinal);
    }

    private void Mount(string target, string options)
    {
        var errno = Mounts.Mount("overlay", target, "overlay", 0, options);
        Assert.True(errno == 0, $"mount overlay {options} failed: errno {errno}");
        _mounts.Add(target);
    }

    public void Dispose()
    {
        foreach (var target in Enumerable.Reverse(_mounts))
        {
            Mounts.Unmount(target, Mounts.MNT_DETACH);
        }
        _dir.Delete(recursive: true);
    }
}
