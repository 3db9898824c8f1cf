using System.Formats.Tar;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Paddock.Daemon.Native;
using Paddock.Daemon.Templates;
using Paddock.Daemon.Templates.Images;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Sandboxes;
using static Paddock.Daemon.Tests.Templates.Images.TestImage;

namespace Paddock.Daemon.Tests.Templates.Images;

/// <summary>
/// POST /templates/import on the real daemon (runtime double: no sandbox starts here, the runc test does that):
/// what the layers leave on disk (whiteouts, opaque directories, links, owners shifted into the sandboxes' range),
/// what the template keeps of the config, both archive forms and a layout directory, and every kind of bad image
/// refused with a clear status and nothing left behind. Needs root (the owners are set with lchown).
/// </summary>
public sealed class ImageImportTests : IAsyncLifetime
{
    private readonly TempDir _state = new();
    private readonly LocalAgentRuntime _runtime = new();
    private TestDaemon _daemon = null!;

    public async Task InitializeAsync() => _daemon = await TestDaemon.StartAsync(_runtime, _state.Path, o => o with { MaxImageMB = 1 });

    public async Task DisposeAsync()
    {
        await _daemon.DisposeAsync();
        await _runtime.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }

    private TemplateRegistry Registry => _daemon.Services.GetRequiredService<TemplateRegistry>();

    /// <summary>Two layers: the second deletes a file of the first, empties a directory of it (keeping its own new file there), replaces a file.</summary>
    internal static TestImage TwoLayers() => new TestImage { WorkingDir = "/app", User = "app" }
        .AddLayer(w =>
        {
            DirEntry(w, "./");
            DirEntry(w, "etc");
            FileEntry(w, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n");
            DirEntry(w, "app");
            FileEntry(w, "app/hello.txt", "hello from layer 1\n", uid: 1000, gid: 1000);
            FileEntry(w, "app/gone.txt", "deleted by layer 2\n");
            FileEntry(w, "app/replaced.txt", "old\n");
            FileEntry(w, "usr/bin/tool", "#!/bin/sh\n", mode: 0b100_111_101_101); // 4755: set-user-ID survives the shift
            HardLinkEntry(w, "usr/bin/tool-link", "usr/bin/tool");
            LinkEntry(w, "app/current", "/app/hello.txt");
            DirEntry(w, "data");
            FileEntry(w, "data/old-1", "x");
            DirEntry(w, "data/old-dir");
            FileEntry(w, "data/old-dir/f", "x");
            w.WriteEntry(new PaxTarEntry(TarEntryType.CharacterDevice, "dev/null-copy") { DeviceMajor = 1, DeviceMinor = 3 });
        })
        .AddLayer(w =>
        {
            WhiteoutEntry(w, "app/.wh.gone.txt");
            // The new file first, the opaque marker after it: the marker hides the lower layers only.
            FileEntry(w, "data/new", "kept\n");
            WhiteoutEntry(w, "data/.wh..wh..opq");
            FileEntry(w, "app/replaced.txt", "new\n");
        }, gzip: false);

    [Fact]
    public async Task An_oci_archive_becomes_a_team_template_with_the_layers_applied_in_order()
    {
        var image = TwoLayers();
        image.Env.Add("GREETING=hello there");
        var body = await ImportAsync("my-image", image.OciArchive());
        var id = (string)body["templateID"]!;
        Assert.Equal(2, (int)body["imageLayers"]!);
        Assert.Equal("app", (string?)body["user"]);
        Assert.Equal("/app", (string?)body["workdir"]);
        Assert.Equal("hello there", (string?)body["envs"]!["GREETING"]);
        Assert.Equal(["/bin/sh", "-c"], body["entrypoint"]!.AsArray().Select(n => (string)n!));
        Assert.Contains(body["notes"]!.AsArray(), n => ((string)n!).Contains("dev/null-copy", StringComparison.Ordinal));

        var record = await Registry.ResolveAsync("my-image", "default", CancellationToken.None);
        Assert.NotNull(record);
        Assert.Equal(id, record.TemplateId);
        Assert.Equal(TemplateKind.Image, record.Kind);
        Assert.Equal("default", record.TeamId);
        Assert.Equal("app", record.DefaultUser);
        Assert.Equal("hello there", record.EnvVars["GREETING"]);
        Assert.Null(await Registry.ResolveAsync("my-image", "other-team", CancellationToken.None));

        var root = Assert.Single(record.Layers);
        Assert.Equal("hello from layer 1\n", File.ReadAllText(Path.Combine(root, "app/hello.txt")));
        Assert.False(File.Exists(Path.Combine(root, "app/gone.txt")));
        Assert.Equal("new\n", File.ReadAllText(Path.Combine(root, "app/replaced.txt")));
        Assert.Equal(["new"], Directory.GetFileSystemEntries(Path.Combine(root, "data")).Select(Path.GetFileName));
        Assert.False(File.Exists(Path.Combine(root, "dev/null-copy")));
        Assert.Equal("/app/hello.txt", new FileInfo(Path.Combine(root, "app/current")).LinkTarget);

        // Owners in the sandboxes' range (100000 + the image's id), set-user-ID kept, the hard link one inode.
        var hello = Files.Stat(Path.Combine(root, "app/hello.txt"));
        Assert.Equal((101000u, 101000u), (hello.Uid, hello.Gid));
        var tool = Files.Stat(Path.Combine(root, "usr/bin/tool"));
        Assert.Equal(100000u, tool.Uid);
        Assert.Equal(0b100_111_101_101u, tool.Mode & 0xFFF);
        Assert.Equal(tool.Inode, Files.Stat(Path.Combine(root, "usr/bin/tool-link")).Inode);
        Assert.Equal(100000u, Files.Stat(root).Uid);

        // Listed as the team's, deletable (its layer goes with it).
        var listed = (await ApiClient.SendAsync(_daemon.Api, HttpMethod.Get, "/templates")).Body!.AsArray().Single(t => (string)t!["templateID"]! == id)!;
        Assert.Equal("image", (string)listed["kind"]!);
        Assert.True((long)listed["sizeBytes"]! > 0);
        Assert.Equal(HttpStatusCode.NoContent, (await ApiClient.SendAsync(_daemon.Api, HttpMethod.Delete, "/templates/my-image")).Status);
        Assert.False(Directory.Exists(root));
    }

    [Fact]
    public async Task A_legacy_docker_save_archive_a_gzipped_archive_and_a_layout_directory_import_alike()
    {
        var image = TwoLayers();
        var legacy = await ImportAsync("legacy", image.DockerSaveArchive());
        var gzipped = await ImportAsync("gzipped", Gzip(image.OciArchive(withLegacyManifest: false)), "application/gzip");
        using var layout = new TempDir();
        image.WriteLayout(layout.Path);
        var importer = _daemon.Services.GetRequiredService<ImageImporter>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var fromDirectory = await importer.ImportDirectoryAsync(layout.Path, "default", "from-dir", timeout.Token);

        foreach (var id in new[] { (string)legacy["templateID"]!, (string)gzipped["templateID"]!, fromDirectory.Template.TemplateId })
        {
            var root = Assert.Single((await Registry.GetAsync(id, CancellationToken.None))!.Layers);
            Assert.Equal("new\n", File.ReadAllText(Path.Combine(root, "app/replaced.txt")));
            Assert.False(File.Exists(Path.Combine(root, "app/gone.txt")));
            Assert.Equal(["new"], Directory.GetFileSystemEntries(Path.Combine(root, "data")).Select(Path.GetFileName));
        }

        // A second import of a name moves it to the new template.
        var again = await ImportAsync("legacy", image.OciArchive());
        Assert.Equal((string)again["templateID"]!, (await Registry.ResolveAsync("legacy", "default", CancellationToken.None))!.TemplateId);
    }

    public static TheoryData<string, string> BadImages() => new()
    {
        { "digest", "has digest" },
        { "dotdot", "escapes the root" },
        { "absolute", "absolute path" },
        { "symlink-parent", "symbolic link" },
        { "truncated", "not a valid" },
        { "media-type", "unsupported media type" },
        { "zstd", "unsupported media type" },
        { "diff-id", "the image config says" },
        { "arm64", "linux/amd64 only" },
        { "not-an-image", "neither index.json" },
        { "truncated-archive", "not a valid tar" },
        { "uid", "sandboxes map ids" },
    };

    [Theory]
    [MemberData(nameof(BadImages))]
    public async Task Bad_images_are_refused_with_a_400_that_says_why_and_leave_nothing_behind(string kind, string expected)
    {
        var image = new TestImage().AddLayer(w => FileEntry(w, "ok.txt", "fine"));
        byte[]? archive = null;
        switch (kind)
        {
            case "digest":
                image.TamperBlob = (_, blob) => { var copy = (byte[])blob.Clone(); copy[^5] ^= 0xff; return copy; };
                break;
            case "dotdot":
                image.AddLayer(w => FileEntry(w, "app/../../escaped", "x"));
                break;
            case "absolute":
                image.AddLayer(w => FileEntry(w, "/etc/escaped", "x"));
                break;
            case "symlink-parent":
                image.AddLayer(w => LinkEntry(w, "evil", "/tmp"));
                image.AddLayer(w => FileEntry(w, "evil/escaped", "x"));
                break;
            case "truncated":
                var whole = new TestImage().AddLayer(w => FileEntry(w, "big", new string('x', 20_000)), gzip: false).Layers[0];
                image.AddRawLayer(whole.Blob[..5000], whole.DiffId, "application/vnd.oci.image.layer.v1.tar");
                break;
            case "media-type":
                image.LayerMediaTypeOverrides[0] = "application/vnd.example.layer.v1.squashfs";
                break;
            case "zstd":
                image.LayerMediaTypeOverrides[0] = "application/vnd.oci.image.layer.v1.tar+zstd";
                break;
            case "diff-id":
                image.AddRawLayer(image.Layers[0].Blob, "sha256:" + new string('0', 64), image.Layers[0].MediaType);
                break;
            case "arm64":
                image.Architecture = "arm64";
                break;
            case "not-an-image":
                archive = Tar(new() { ["hello.txt"] = "hi"u8.ToArray() }, []);
                break;
            case "truncated-archive":
                archive = image.OciArchive()[..3000];
                break;
            case "uid":
                image.AddLayer(w => FileEntry(w, "high", "x", uid: 200000));
                break;
        }
        var refused = await SendImportAsync("bad-" + kind, archive ?? image.OciArchive());
        var message = ApiClient.AssertError(HttpStatusCode.BadRequest, refused);
        Assert.Contains(expected, message, StringComparison.Ordinal);
        await AssertNothingLeftAsync();
        Assert.False(File.Exists("/tmp/escaped"));
    }

    [Fact]
    public async Task An_image_over_the_size_limit_gets_413_and_a_wrong_content_type_415()
    {
        // The daemon's limit is 1 MiB here: a 2 MiB file (compressing to almost nothing) is over it once unpacked.
        var image = new TestImage().AddLayer(w => FileEntry(w, "big", new string('z', 2 << 20)));
        Assert.True(image.OciArchive().Length < 1 << 20);
        var message = ApiClient.AssertError(HttpStatusCode.RequestEntityTooLarge, await SendImportAsync("too-big", image.OciArchive()));
        Assert.Contains("limit", message, StringComparison.Ordinal);
        await AssertNothingLeftAsync();
        ApiClient.AssertError(HttpStatusCode.UnsupportedMediaType, await SendImportAsync("json", image.OciArchive(), "application/json"));
        ApiClient.AssertError(HttpStatusCode.BadRequest, await SendImportAsync("", image.OciArchive()));
        ApiClient.AssertError(HttpStatusCode.BadRequest, await SendImportAsync("base", image.OciArchive()));
        ApiClient.AssertError(HttpStatusCode.BadRequest, await SendImportAsync("../x", image.OciArchive()));
        using var anonymous = new HttpRequestMessage(HttpMethod.Post, "/templates/import?name=x") { Content = new ByteArrayContent(image.OciArchive()) };
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        Assert.Equal(HttpStatusCode.Unauthorized, (await _daemon.Raw.SendAsync(anonymous, timeout.Token)).StatusCode);
    }

    private async Task AssertNothingLeftAsync()
    {
        Assert.DoesNotContain(await Registry.ListAsync("default", CancellationToken.None), t => t.Kind == TemplateKind.Image);
        Assert.Empty(Directory.Exists(Registry.LayersDirectory) ? Directory.GetFileSystemEntries(Registry.LayersDirectory) : []);
        var scratch = Path.Combine(_state.Path, "image-imports");
        Assert.Empty(Directory.Exists(scratch) ? Directory.GetFileSystemEntries(scratch) : []);
    }

    private async Task<JsonNode> ImportAsync(string name, byte[] archive, string contentType = "application/x-tar")
    {
        var (status, body, _) = await SendImportAsync(name, archive, contentType);
        Assert.True(status == HttpStatusCode.Created, $"import answered {(int)status}: {body?.ToJsonString()}");
        return body!;
    }

    internal Task<(HttpStatusCode, JsonNode?, HttpResponseMessage)> SendImportAsync(string name, byte[] archive, string contentType = "application/x-tar") =>
        SendImportAsync(_daemon, name, archive, contentType);

    internal static async Task<(HttpStatusCode, JsonNode?, HttpResponseMessage)> SendImportAsync(TestDaemon daemon, string name, byte[] archive, string contentType = "application/x-tar")
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/templates/import?name=" + Uri.EscapeDataString(name)) { Content = new ByteArrayContent(archive) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var response = await daemon.Api.SendAsync(request, timeout.Token);
        var text = await response.Content.ReadAsStringAsync(timeout.Token);
        return (response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text), response);
    }

    internal static byte[] Gzip(byte[] bytes)
    {
        var output = new MemoryStream();
        using (var z = new System.IO.Compression.GZipStream(output, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        {
            z.Write(bytes);
        }
        return output.ToArray();
    }
}
