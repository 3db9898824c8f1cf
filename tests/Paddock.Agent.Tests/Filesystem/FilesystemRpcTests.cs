using Paddock.Envd.Connect;
using Paddock.Envd.Filesystem;
using static Paddock.Agent.Tests.Filesystem.FsTestSupport;

namespace Paddock.Agent.Tests.Filesystem;

/// <summary>The unary RPCs of filesystem.Filesystem against the real agent, in both Connect encodings.</summary>
public sealed class FilesystemRpcTests : IClassFixture<SharedAgent>
{
    private readonly AgentProcess _agent;

    public FilesystemRpcTests(SharedAgent shared)
    {
        _agent = shared.Agent;
    }

    private FsConnectClient Client(bool json, string? user = null) => new(_agent.Http, json, user);

    private static Task<StatResponse> Stat(FsConnectClient c, string path) => c.CallAsync<StatResponse>("Stat", new StatRequest { Path = path });

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Stat_reports_every_field_of_a_file(bool json)
    {
        using var dir = new TempDir();
        var path = dir["a.txt"];
        await File.WriteAllTextAsync(path, "test");
        SetMode(path, (UnixFileMode)0b110_100_100);
        Chown(path, "nobody");
        SetXattr(path, "user.e2b.author", "mish");
        SetXattr(path, "user.other", "not metadata");
        var modified = File.GetLastWriteTimeUtc(path);

        var entry = (await Stat(Client(json), path)).Entry;

        Assert.Equal("a.txt", entry.Name);
        Assert.Equal(FileType.File, entry.Type);
        Assert.Equal(path, entry.Path);
        Assert.Equal(4, entry.Size);
        Assert.Equal(0x1A4u, entry.Mode); // 0o644: only the permission bits, as E2B's SDK tests expect
        Assert.Equal("-rw-r--r--", entry.Permissions);
        Assert.Equal("nobody", entry.Owner);
        Assert.Equal("nogroup", entry.Group);
        Assert.Equal(modified, entry.ModifiedTime.ToDateTime(), TimeSpan.FromMilliseconds(1));
        Assert.False(entry.HasSymlinkTarget);
        Assert.Equal(new Dictionary<string, string> { ["author"] = "mish" }, entry.Metadata);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Stat_of_a_directory_and_of_symlinks(bool json)
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["sub"]);
        SetMode(dir["sub"], (UnixFileMode)0b111_101_101);
        await File.WriteAllTextAsync(dir["sub/target.txt"], "x");
        File.CreateSymbolicLink(dir["rel-link"], "sub/target.txt");
        File.CreateSymbolicLink(dir["dangling"], "missing.txt");
        var client = Client(json);

        var sub = (await Stat(client, dir["sub"])).Entry;
        Assert.Equal(FileType.Directory, sub.Type);
        Assert.Equal(0x1EDu, sub.Mode);
        Assert.Equal("drwxr-xr-x", sub.Permissions);
        Assert.True(sub.Size > 0);

        var link = (await Stat(client, dir["rel-link"])).Entry;
        Assert.Equal(FileType.Symlink, link.Type);
        Assert.Equal("rel-link", link.Name);
        Assert.Equal(dir["sub/target.txt"], link.SymlinkTarget); // absolute, resolved
        Assert.StartsWith("L", link.Permissions, StringComparison.Ordinal); // Go's os.FileMode notation, as envd

        var dangling = (await Stat(client, dir["dangling"])).Entry;
        Assert.Equal(FileType.Symlink, dangling.Type);
        Assert.Equal(dir["missing.txt"], dangling.SymlinkTarget);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Stat_of_a_missing_path_is_not_found_and_names_it(bool json)
    {
        using var dir = new TempDir();
        (await ThrowsConnect(() => Stat(Client(json), dir["nope.txt"]))).Is(ConnectCode.NotFound, dir["nope.txt"]);
    }

    [Fact]
    public async Task Relative_and_tilde_paths_resolve_against_the_callers_home()
    {
        var name = $"paddock-fs-test-{Guid.NewGuid():N}.txt";
        var inRootHome = Path.Combine("/root", name);
        await File.WriteAllTextAsync(inRootHome, "hi");
        try
        {
            var client = Client(json: true);
            Assert.Equal(inRootHome, (await Stat(client, name)).Entry.Path);
            Assert.Equal(inRootHome, (await Stat(client, "~/" + name)).Entry.Path);
            Assert.Equal(inRootHome, (await Stat(client, "./sub/../" + name)).Entry.Path);
            Assert.Equal("/root", (await Stat(client, "~")).Entry.Path);

            // Another user (named by Basic auth, as the SDK does) has another home: nobody's is /nonexistent.
            (await ThrowsConnect(() => Stat(Client(json: true, user: "nobody"), name))).Is(ConnectCode.NotFound, "/nonexistent/" + name);
            (await ThrowsConnect(() => Stat(client, "~nobody/x"))).Is(ConnectCode.InvalidArgument, "~nobody/x");
            (await ThrowsConnect(() => Stat(Client(json: true, user: "no-such-user"), name))).Is(ConnectCode.Unauthenticated, "no-such-user");
        }
        finally
        {
            File.Delete(inRootHome);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ListDir_walks_to_the_requested_depth_in_WalkDir_order(bool json)
    {
        using var dir = new TempDir();
        foreach (var d in new[] { "subdir1/subdir1_1", "subdir1/subdir1_2", "subdir2/subdir2_1", "subdir2/subdir2_2" })
        {
            Directory.CreateDirectory(dir[d]);
        }
        await File.WriteAllTextAsync(dir["file1.txt"], "Hello, world!");
        await File.WriteAllTextAsync(dir["subdir1/subdir1_1/deep.txt"], "deep");
        var client = Client(json);

        async Task<List<string>> List(uint depth) =>
            (await client.CallAsync<ListDirResponse>("ListDir", new ListDirRequest { Path = dir.Path, Depth = depth })).Entries
                .Select(e => e.Path[(dir.Path.Length + 1)..]).ToList();

        string[] level1 = ["file1.txt", "subdir1", "subdir2"];
        Assert.Equal(level1, await List(0)); // unset depth means 1, as envd
        Assert.Equal(level1, await List(1));
        Assert.Equal(["file1.txt", "subdir1", "subdir1/subdir1_1", "subdir1/subdir1_2", "subdir2", "subdir2/subdir2_1", "subdir2/subdir2_2"], await List(2));
        Assert.Equal(["file1.txt", "subdir1", "subdir1/subdir1_1", "subdir1/subdir1_1/deep.txt", "subdir1/subdir1_2", "subdir2", "subdir2/subdir2_1", "subdir2/subdir2_2"], await List(3));

        var entries = (await client.CallAsync<ListDirResponse>("ListDir", new ListDirRequest { Path = dir.Path, Depth = 1 })).Entries;
        var file = entries.Single(e => e.Name == "file1.txt");
        Assert.Equal(FileType.File, file.Type);
        Assert.Equal(13, file.Size);
        Assert.Equal(FileType.Directory, entries.Single(e => e.Name == "subdir1").Type);
    }

    [Fact]
    public async Task ListDir_never_follows_symlinked_directories_so_loops_end()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["a"]);
        File.CreateSymbolicLink(dir["a/loop"], dir.Path); // points back up
        File.CreateSymbolicLink(dir["a/self"], ".");
        var entries = (await Client(json: true).CallAsync<ListDirResponse>("ListDir", new ListDirRequest { Path = dir.Path, Depth = 50 })).Entries;
        Assert.Equal(["a", "a/loop", "a/self"], entries.Select(e => e.Path[(dir.Path.Length + 1)..]));
        Assert.All(entries.Skip(1), e => Assert.Equal(FileType.Symlink, e.Type));
    }

    [Fact]
    public async Task ListDir_of_a_symlinked_directory_reports_paths_under_the_link()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["real"]);
        await File.WriteAllTextAsync(dir["real/x.txt"], "x");
        File.CreateSymbolicLink(dir["link"], dir["real"]);
        var entries = (await Client(json: false).CallAsync<ListDirResponse>("ListDir", new ListDirRequest { Path = dir["link"] })).Entries;
        Assert.Equal([dir["link/x.txt"]], entries.Select(e => e.Path));
    }

    [Fact]
    public async Task ListDir_of_a_file_or_a_missing_path_fails_clearly()
    {
        using var dir = new TempDir();
        await File.WriteAllTextAsync(dir["f"], "x");
        var client = Client(json: true);
        (await ThrowsConnect(() => client.CallAsync<ListDirResponse>("ListDir", new ListDirRequest { Path = dir["f"] }))).Is(ConnectCode.InvalidArgument, dir["f"]);
        (await ThrowsConnect(() => client.CallAsync<ListDirResponse>("ListDir", new ListDirRequest { Path = dir["none"] }))).Is(ConnectCode.NotFound, dir["none"]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task MakeDir_creates_parents_owned_by_the_caller_and_reports_existing_ones(bool json)
    {
        using var dir = new TempDir();
        var client = Client(json, user: "nobody");
        var made = (await client.CallAsync<MakeDirResponse>("MakeDir", new MakeDirRequest { Path = dir["x/y/z"] })).Entry;
        Assert.Equal(dir["x/y/z"], made.Path);
        Assert.Equal(FileType.Directory, made.Type);
        Assert.Equal("nobody", made.Owner);
        foreach (var d in new[] { "x", "x/y", "x/y/z" })
        {
            var entry = (await Stat(client, dir[d])).Entry;
            Assert.Equal("nobody", entry.Owner);
            Assert.Equal("nogroup", entry.Group);
        }
        Assert.Equal("root", (await Stat(client, dir.Path)).Entry.Owner); // existing parents keep their owner

        (await ThrowsConnect(() => client.CallAsync<MakeDirResponse>("MakeDir", new MakeDirRequest { Path = dir["x/y"] }))).Is(ConnectCode.AlreadyExists, dir["x/y"]);

        await File.WriteAllTextAsync(dir["file"], "x");
        (await ThrowsConnect(() => client.CallAsync<MakeDirResponse>("MakeDir", new MakeDirRequest { Path = dir["file"] }))).Is(ConnectCode.InvalidArgument, dir["file"]);
        (await ThrowsConnect(() => client.CallAsync<MakeDirResponse>("MakeDir", new MakeDirRequest { Path = dir["file/sub"] }))).Is(ConnectCode.InvalidArgument, dir["file"]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Move_renames_creating_destination_parents_and_keeps_metadata(bool json)
    {
        using var dir = new TempDir();
        await File.WriteAllTextAsync(dir["old.txt"], "content");
        SetXattr(dir["old.txt"], "user.e2b.stage", "renamed");
        var client = Client(json, user: "nobody");

        var moved = (await client.CallAsync<MoveResponse>("Move", new MoveRequest { Source = dir["old.txt"], Destination = dir["new/deeper/new.txt"] })).Entry;

        Assert.Equal("new.txt", moved.Name);
        Assert.Equal(dir["new/deeper/new.txt"], moved.Path);
        Assert.Equal(FileType.File, moved.Type);
        Assert.Equal("renamed", moved.Metadata["stage"]);
        Assert.False(File.Exists(dir["old.txt"]));
        Assert.Equal("content", await File.ReadAllTextAsync(dir["new/deeper/new.txt"]));
        Assert.Equal("nobody", (await Stat(client, dir["new"])).Entry.Owner);

        (await ThrowsConnect(() => client.CallAsync<MoveResponse>("Move", new MoveRequest { Source = dir["old.txt"], Destination = dir["b.txt"] }))).Is(ConnectCode.NotFound, dir["old.txt"]);
    }

    [Fact]
    public async Task Move_of_a_directory_into_itself_is_an_invalid_argument()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["d"]);
        (await ThrowsConnect(() => Client(json: true).CallAsync<MoveResponse>("Move", new MoveRequest { Source = dir["d"], Destination = dir["d/inside"] }))).Is(ConnectCode.InvalidArgument);
        Assert.True(Directory.Exists(dir["d"]));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Remove_deletes_trees_without_following_symlinks_and_ignores_missing_paths(bool json)
    {
        using var dir = new TempDir();
        using var outside = new TempDir();
        await File.WriteAllTextAsync(outside["keep.txt"], "keep");
        Directory.CreateDirectory(dir["tree/a/b"]);
        await File.WriteAllTextAsync(dir["tree/a/b/f.txt"], "x");
        await File.WriteAllTextAsync(dir["tree/.hidden"], "x");
        File.CreateSymbolicLink(dir["tree/a/outside"], outside.Path);
        var client = Client(json);

        await client.CallAsync<RemoveResponse>("Remove", new RemoveRequest { Path = dir["tree"] });

        Assert.False(Directory.Exists(dir["tree"]));
        Assert.Equal("keep", await File.ReadAllTextAsync(outside["keep.txt"]));
        await client.CallAsync<RemoveResponse>("Remove", new RemoveRequest { Path = dir["never-existed"] }); // envd: os.RemoveAll
        (await ThrowsConnect(() => client.CallAsync<RemoveResponse>("Remove", new RemoveRequest { Path = "/tmp/../" }))).Is(ConnectCode.InvalidArgument, "root");
    }

    [Fact]
    public async Task Hostile_paths_get_clear_errors()
    {
        using var dir = new TempDir();
        var client = Client(json: true);
        (await ThrowsConnect(() => Stat(client, dir.Path + "/a\0b"))).Is(ConnectCode.InvalidArgument, "NUL");
        (await ThrowsConnect(() => Stat(client, dir.Path + "/" + new string('n', 300)))).Is(ConnectCode.InvalidArgument, "too long");
        (await ThrowsConnect(() => Stat(client, "/" + string.Join('/', Enumerable.Repeat("abcdefgh", 600))))).Is(ConnectCode.InvalidArgument, "longer than");
        (await ThrowsConnect(() => client.CallAsync<MakeDirResponse>("MakeDir", new MakeDirRequest { Path = dir.Path + "/" + new string('n', 300) }))).Is(ConnectCode.InvalidArgument, "too long");

        // '..' is resolved lexically, never past the root.
        Assert.Equal(dir.Path, (await Stat(client, dir.Path + "/x/../")).Entry.Path);
        Assert.Equal("/", (await Stat(client, "/../../..")).Entry.Path);

        // A symlink loop is an error about links, not a hang.
        File.CreateSymbolicLink(dir["loop1"], dir["loop2"]);
        File.CreateSymbolicLink(dir["loop2"], dir["loop1"]);
        (await ThrowsConnect(() => client.CallAsync<ListDirResponse>("ListDir", new ListDirRequest { Path = dir["loop1"] }))).Is(ConnectCode.InvalidArgument, "symbolic links");
        Assert.Equal(FileType.Symlink, (await Stat(client, dir["loop1"])).Entry.Type);
    }

    [Fact]
    public async Task Permission_problems_are_permission_denied()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["locked"]);
        await File.WriteAllTextAsync(dir["locked/f.txt"], "x");
        // Even root may not change an immutable directory (chattr +i gives EPERM): the agent runs as root here.
        Assert.Equal(0, Run("chattr", "+i", dir["locked"]));
        try
        {
            var client = Client(json: true);
            (await ThrowsConnect(() => client.CallAsync<RemoveResponse>("Remove", new RemoveRequest { Path = dir["locked/f.txt"] }))).Is(ConnectCode.PermissionDenied, dir["locked/f.txt"]);
            (await ThrowsConnect(() => client.CallAsync<MakeDirResponse>("MakeDir", new MakeDirRequest { Path = dir["locked/sub"] }))).Is(ConnectCode.PermissionDenied, dir["locked/sub"]);
            (await ThrowsConnect(() => client.CallAsync<MoveResponse>("Move", new MoveRequest { Source = dir["locked/f.txt"], Destination = dir["out.txt"] }))).Is(ConnectCode.PermissionDenied);
            Assert.True(File.Exists(dir["locked/f.txt"]));
        }
        finally
        {
            Run("chattr", "-i", dir["locked"]);
        }
    }

    [Fact]
    public async Task Unknown_methods_and_content_types_are_refused()
    {
        using var content = new StringContent("{}", System.Text.Encoding.UTF8, "text/plain");
        using var response = await _agent.Http.PostAsync("/filesystem.Filesystem/Stat", content);
        Assert.Equal(System.Net.HttpStatusCode.UnsupportedMediaType, response.StatusCode);
    }
}
