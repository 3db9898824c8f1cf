using System.Formats.Tar;
using System.Net;
using System.Text.Json.Nodes;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;
using static Paddock.Daemon.Tests.Templates.Images.TestImage;

namespace Paddock.Daemon.Tests.Templates.Images;

/// <summary>
/// An image the test builds itself (a static busybox as the whole root filesystem, the agent brings its own loader),
/// imported through the API, starts real runc sandboxes that see its files, its whiteout, its Env and its user, and
/// serves as the base of a build (fromImage by the template's name) whose RUN step runs in it. Needs root and runc.
/// </summary>
[Collection(RuncCollection.Name)]
public sealed class ImageSandboxTests(RuncFixture fixture) : IAsyncLifetime
{
    private static readonly string[] Applets = ["sh", "cat", "echo", "test", "whoami", "ls", "id", "env", "mkdir", "rm", "true", "pwd"];

    private readonly TempDir _state = new();

    private readonly RuncOptions _options = RuncFixture.OwnOptions("daemon-images", "paddock-image-test");

    [Fact]
    public async Task An_imported_busybox_image_starts_sandboxes_and_is_a_build_base()
    {
        _ = fixture.AgentBinary;
        var busybox = await File.ReadAllBytesAsync(BusyboxRecipe.Binary);
        var image = new TestImage { User = "app", WorkingDir = "/home/app" }
            .AddLayer(w =>
            {
                DirEntry(w, "bin");
                w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "bin/busybox") { DataStream = new MemoryStream(busybox), Mode = (UnixFileMode)0b111_101_101 });
                foreach (var applet in Applets)
                {
                    LinkEntry(w, "bin/" + applet, "busybox");
                }
                DirEntry(w, "etc");
                FileEntry(w, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n");
                FileEntry(w, "etc/group", "root:x:0:\napp:x:1000:\n");
                DirEntry(w, "tmp", 0b1_111_111_111);
                DirEntry(w, "home");
                w.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "home/app") { Mode = (UnixFileMode)0b111_101_101, Uid = 1000, Gid = 1000 });
                FileEntry(w, "hello.txt", "hello from the image\n");
                FileEntry(w, "gone.txt", "whited out by layer 2\n");
            })
            .AddLayer(w =>
            {
                WhiteoutEntry(w, ".wh.gone.txt");
                FileEntry(w, "new.txt", "from layer 2\n");
            }, gzip: false);
        image.Env.Add("GREETING=hello env");

        using var runtime = fixture.NewRuntime(_options);
        await using var daemon = await TestDaemon.StartAsync(runtime, _state.Path, templates: new NoBuiltins());
        var (status, body, _) = await ImageImportTests.SendImportAsync(daemon, "busybox-img", image.OciArchive());
        Assert.True(status == HttpStatusCode.Created, $"import answered {(int)status}: {body?.ToJsonString()}");

        var created = await CreateAsync(daemon, """{"templateID":"busybox-img","timeout":300}""");
        var id = Get<string>(created, "sandboxID");
        var token = Get<string>(created, "envdAccessToken");
        var (exit, stdout) = await DaemonCommands.RunAsync(daemon, id, token,
            """cat /hello.txt /new.txt; echo "$GREETING"; test -e /gone.txt || echo gone; whoami; id -u""");
        Assert.Equal(0, exit);
        Assert.Equal("hello from the image\nfrom layer 2\nhello env\ngone\napp\n1000\n", stdout);
        Assert.Equal("root\n", (await DaemonCommands.RunAsync(daemon, id, token, "whoami", user: "root")).Stdout);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);

        // A build on it: its RUN step runs in a sandbox of the image, as the image's user.
        var built = await RegistryPullTests.BuildAsync(daemon, "busybox-built", "busybox-img",
            new JsonArray(new JsonObject { ["type"] = "RUN", ["args"] = new JsonArray("echo built by $(whoami) > /tmp/built.txt") }));
        Assert.True(built.Status == "ready", $"build ended {built.Status}: {built.Reason}");
        var second = await CreateAsync(daemon, """{"templateID":"busybox-built","timeout":300}""");
        var id2 = Get<string>(second, "sandboxID");
        var (_, seen) = await DaemonCommands.RunAsync(daemon, id2, Get<string>(second, "envdAccessToken"), "cat /tmp/built.txt /hello.txt");
        Assert.Equal("built by app\nhello from the image\n", seen);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{id2}")).Status);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        using var runtime = fixture.NewRuntime(_options);
        await RuncFixture.DestroyAllAsync(runtime);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }

    /// <summary>No built-in templates: everything this test starts comes from its import.</summary>
    private sealed class NoBuiltins : ITemplateLookup
    {
        public ValueTask<SandboxTemplate?> FindAsync(string templateIdOrAlias, CancellationToken cancellationToken) => ValueTask.FromResult<SandboxTemplate?>(null);
    }
}
