using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Paddock.Agent.Tests.Filesystem;
using Paddock.Envd.Filesystem;
using static Paddock.Agent.Tests.Filesystem.FsTestSupport;

namespace Paddock.Agent.Tests.Files;

/// <summary>GET and POST /files against the real agent: both upload forms, errors, metadata, encodings.</summary>
public sealed class FileTransferTests : IClassFixture<SharedAgent>
{
    private readonly AgentProcess _agent;

    public FileTransferTests(SharedAgent shared)
    {
        _agent = shared.Agent;
    }

    private HttpClient Http => _agent.Http;

    internal static string Url(string path, string? user = null) =>
        "/files?path=" + Uri.EscapeDataString(path) + (user is null ? "" : "&username=" + Uri.EscapeDataString(user));

    internal static ByteArrayContent Octet(string text) => Octet(Encoding.UTF8.GetBytes(text));

    internal static ByteArrayContent Octet(byte[] bytes)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return content;
    }

    private static ByteArrayContent Part(string text)
    {
        var content = new ByteArrayContent(Encoding.UTF8.GetBytes(text));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return content;
    }

    private static async Task<JsonElement> Json(HttpResponseMessage response)
    {
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return doc.RootElement.Clone();
    }

    private static async Task AssertError(HttpResponseMessage response, HttpStatusCode status, string messageContains)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        using var doc = JsonDocument.Parse(body);
        Assert.Equal((int)status, doc.RootElement.GetProperty("code").GetInt32()); // envd.yaml Error: code is the HTTP status
        Assert.Contains(messageContains, doc.RootElement.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_octet_stream_upload_is_written_owned_by_the_user_and_downloads_back()
    {
        using var dir = new TempDir();
        var path = dir["new/dirs/hello.txt"];
        using (var response = await Http.PostAsync(Url(path, "nobody"), Octet("hello world")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var entries = await Json(response);
            var entry = Assert.Single(entries.EnumerateArray());
            Assert.Equal("hello.txt", entry.GetProperty("name").GetString());
            Assert.Equal("file", entry.GetProperty("type").GetString());
            Assert.Equal(path, entry.GetProperty("path").GetString());
            Assert.False(entry.TryGetProperty("metadata", out _)); // the SDK's signing test compares {name, path, type} exactly
        }
        var stat = (await new FsConnectClient(Http, json: true).CallAsync<StatResponse>("Stat", new StatRequest { Path = path })).Entry;
        Assert.Equal("nobody", stat.Owner);
        Assert.Equal("nogroup", stat.Group);
        Assert.Equal("-rw-r--r--", stat.Permissions);
        foreach (var d in new[] { "new", "new/dirs" })
        {
            Assert.Equal("nobody", (await new FsConnectClient(Http, json: true).CallAsync<StatResponse>("Stat", new StatRequest { Path = dir[d] })).Entry.Owner);
        }

        using var download = await Http.GetAsync(Url(path));
        Assert.Equal(HttpStatusCode.OK, download.StatusCode);
        Assert.Equal("application/octet-stream", download.Content.Headers.ContentType?.MediaType);
        Assert.Equal(11, download.Content.Headers.ContentLength);
        Assert.Equal("hello world", await download.Content.ReadAsStringAsync());
        Assert.Empty(Directory.GetFiles(dir["new/dirs"], ".paddock-upload-*"));
    }

    [Fact]
    public async Task Relative_paths_and_the_Basic_auth_user_apply_to_files_too()
    {
        var name = $"paddock-files-test-{Guid.NewGuid():N}.txt";
        try
        {
            using (var response = await Http.PostAsync(Url(name), Octet("in root's home")))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal("/root/" + name, (await Json(response))[0].GetProperty("path").GetString());
            }
            Assert.Equal("in root's home", await File.ReadAllTextAsync("/root/" + name));
            Assert.Equal("in root's home", await Http.GetStringAsync(Url("~/" + name)));
        }
        finally
        {
            File.Delete("/root/" + name);
        }

        using var dir = new TempDir();
        using var request = new HttpRequestMessage(HttpMethod.Post, Url(dir["basic.txt"])) { Content = Octet("x") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String("nobody:"u8.ToArray()));
        using (var response = await Http.SendAsync(request))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Equal("nobody", (await new FsConnectClient(Http, json: false).CallAsync<StatResponse>("Stat", new StatRequest { Path = dir["basic.txt"] })).Entry.Owner);
    }

    [Fact]
    public async Task A_multipart_upload_writes_every_file_to_its_filename_in_order()
    {
        using var dir = new TempDir();
        using var form = new MultipartFormDataContent();
        var targets = new[] { dir["one.txt"], dir["a/two.txt"], dir["a/b/three.txt"] };
        for (var i = 0; i < targets.Length; i++)
        {
            form.Add(Part($"content {i}"), "file", targets[i]);
        }
        form.Add(new StringContent("ignored"), "other"); // parts not named "file" are skipped
        using var response = await Http.PostAsync("/files", form);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var entries = (await Json(response)).EnumerateArray().ToList();
        Assert.Equal(targets, entries.Select(e => e.GetProperty("path").GetString()));
        Assert.Equal(["one.txt", "two.txt", "three.txt"], entries.Select(e => e.GetProperty("name").GetString()));
        for (var i = 0; i < targets.Length; i++)
        {
            Assert.Equal($"content {i}", await File.ReadAllTextAsync(targets[i]));
        }
    }

    [Fact]
    public async Task A_multipart_part_without_a_filename_goes_to_the_path_parameter()
    {
        // What the SDK's signing test sends: form.append('file', 'file content') to an upload URL with ?path=.
        using var dir = new TempDir();
        using var form = new MultipartFormDataContent { { new StringContent("file content"), "file" } };
        using var response = await Http.PostAsync(Url(dir["hello.txt"]), form);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("file content", await File.ReadAllTextAsync(dir["hello.txt"]));
    }

    [Fact]
    public async Task A_multipart_upload_that_fails_part_way_changes_nothing()
    {
        using var dir = new TempDir();
        await File.WriteAllTextAsync(dir["first.txt"], "original");
        using var form = new MultipartFormDataContent
        {
            { Part("replaced?"), "file", dir["first.txt"] },
            { Part("dup 1"), "file", dir["same.txt"] },
            { Part("dup 2"), "file", dir["same.txt"] },
        };
        using var response = await Http.PostAsync("/files", form);
        await AssertError(response, HttpStatusCode.BadRequest, "same path");
        Assert.Equal("original", await File.ReadAllTextAsync(dir["first.txt"]));
        Assert.Equal(["first.txt"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public async Task Gzip_works_in_both_directions()
    {
        using var dir = new TempDir();
        var text = string.Concat(Enumerable.Repeat("gzip me please. ", 5000));
        using var compressed = new MemoryStream();
        using (var gz = new GZipStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            gz.Write(Encoding.UTF8.GetBytes(text));
        }
        var content = Octet(compressed.ToArray());
        content.Headers.ContentEncoding.Add("gzip");
        using (var response = await Http.PostAsync(Url(dir["g.txt"]), content))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Equal(text, await File.ReadAllTextAsync(dir["g.txt"]));

        using var request = new HttpRequestMessage(HttpMethod.Get, Url(dir["g.txt"]));
        request.Headers.AcceptEncoding.ParseAdd("gzip");
        using var download = await Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, download.StatusCode);
        Assert.Equal(["gzip"], download.Content.Headers.ContentEncoding);
        var body = await download.Content.ReadAsByteArrayAsync();
        Assert.True(body.Length < text.Length / 10);
        using var decompressed = new StreamReader(new GZipStream(new MemoryStream(body), CompressionMode.Decompress));
        Assert.Equal(text, await decompressed.ReadToEndAsync());

        using var refuse = new HttpRequestMessage(HttpMethod.Get, Url(dir["g.txt"]));
        refuse.Headers.TryAddWithoutValidation("Accept-Encoding", "br, identity;q=0");
        using var notAcceptable = await Http.SendAsync(refuse);
        await AssertError(notAcceptable, HttpStatusCode.NotAcceptable, "supported: [identity, gzip]");

        var bogus = Octet("x");
        bogus.Headers.ContentEncoding.Add("zstd");
        using var unsupported = await Http.PostAsync(Url(dir["z.txt"]), bogus);
        await AssertError(unsupported, HttpStatusCode.BadRequest, "Content-Encoding");
    }

    [Fact]
    public async Task An_empty_file_downloads_with_Content_Length_0_even_when_gzip_is_accepted()
    {
        using var dir = new TempDir();
        await File.WriteAllBytesAsync(dir["empty"], []);
        using var request = new HttpRequestMessage(HttpMethod.Get, Url(dir["empty"]));
        request.Headers.AcceptEncoding.ParseAdd("gzip");
        using var response = await Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(0, response.Content.Headers.ContentLength); // the SDK recognises an empty file by it
    }

    [Fact]
    public async Task Errors_have_envds_status_codes_and_json_bodies()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["adir"]);

        using (var r = await Http.GetAsync(Url(dir["missing.txt"])))
        {
            await AssertError(r, HttpStatusCode.NotFound, dir["missing.txt"]);
        }
        using (var r = await Http.GetAsync(Url(dir["adir"])))
        {
            await AssertError(r, HttpStatusCode.BadRequest, "is a directory");
        }
        using (var r = await Http.GetAsync(Url(dir["adir"], user: "no-such-user")))
        {
            await AssertError(r, HttpStatusCode.Unauthorized, "no-such-user");
        }
        using (var r = await Http.PostAsync(Url(dir["x"], user: "no-such-user"), Octet("x")))
        {
            await AssertError(r, HttpStatusCode.Unauthorized, "no-such-user");
        }
        using (var r = await Http.PostAsync(Url(dir["adir"]), Octet("x")))
        {
            await AssertError(r, HttpStatusCode.BadRequest, "is a directory");
        }
        using (var r = await Http.PostAsync("/files", Octet("x")))
        {
            await AssertError(r, HttpStatusCode.BadRequest, "path query parameter is required");
        }
        using (var r = await Http.PostAsync(Url(dir["t.txt"]), new StringContent("x", Encoding.UTF8, "text/plain")))
        {
            await AssertError(r, HttpStatusCode.BadRequest, "Content-Type");
        }
        using (var r = await Http.PostAsync(Url(dir["t.txt"]), new StringContent("--b\r\nbroken", Encoding.UTF8, "multipart/form-data")))
        {
            await AssertError(r, HttpStatusCode.BadRequest, "boundary");
        }
        var truncated = new StringContent("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nno closing boundary", Encoding.UTF8);
        truncated.Headers.ContentType = MediaTypeHeaderValue.Parse("multipart/form-data; boundary=b");
        using (var r = await Http.PostAsync(Url(dir["t.txt"]), truncated))
        {
            await AssertError(r, HttpStatusCode.BadRequest, "malformed upload body");
        }
        using (var r = await Http.GetAsync("/files?path=" + Uri.EscapeDataString(dir.Path + "/a\0b")))
        {
            await AssertError(r, HttpStatusCode.BadRequest, "NUL");
        }
        using (var r = await Http.PostAsync(Url(dir.Path + "/" + new string('n', 300)), Octet("x")))
        {
            await AssertError(r, HttpStatusCode.BadRequest, "too long");
        }
        Assert.Equal(["adir"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public async Task Special_files_are_not_downloaded_and_symlinks_are_followed()
    {
        using var dir = new TempDir();
        Assert.Equal(0, Run("mkfifo", dir["fifo"]));
        using (var r = await Http.GetAsync(Url(dir["fifo"])))
        {
            await AssertError(r, HttpStatusCode.BadRequest, "not a regular file");
        }
        await File.WriteAllTextAsync(dir["real.txt"], "through the link");
        File.CreateSymbolicLink(dir["link.txt"], "real.txt");
        Assert.Equal("through the link", await Http.GetStringAsync(Url(dir["link.txt"])));

        // Writing to a symlink writes the file it points to, as envd's in-place write does; the link stays.
        using (var r = await Http.PostAsync(Url(dir["link.txt"]), Octet("replaced")))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal(dir["link.txt"], (await Json(r))[0].GetProperty("path").GetString());
        }
        Assert.Equal("replaced", await File.ReadAllTextAsync(dir["real.txt"]));
        Assert.NotNull(new FileInfo(dir["link.txt"]).LinkTarget);

        // A symlink loop is refused, whichever way it is reached.
        File.CreateSymbolicLink(dir["loop1"], "loop2");
        File.CreateSymbolicLink(dir["loop2"], "loop1");
        using (var r = await Http.PostAsync(Url(dir["loop1"]), Octet("x")))
        {
            await AssertError(r, HttpStatusCode.BadRequest, "symbolic links");
        }
        using (var r = await Http.GetAsync(Url(dir["loop1"])))
        {
            await AssertError(r, HttpStatusCode.BadRequest, "symbolic links");
        }
    }

    [Fact]
    public async Task A_directory_the_agent_may_not_change_answers_403()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["locked"]);
        Assert.Equal(0, Run("chattr", "+i", dir["locked"])); // EPERM even for root
        try
        {
            using var r = await Http.PostAsync(Url(dir["locked/f.txt"]), Octet("x"));
            await AssertError(r, HttpStatusCode.Forbidden, dir["locked/f.txt"]);
        }
        finally
        {
            Run("chattr", "-i", dir["locked"]);
        }
        Assert.Empty(Directory.GetFileSystemEntries(dir["locked"]));
    }

    [Fact]
    public async Task Overwriting_keeps_the_files_permissions()
    {
        using var dir = new TempDir();
        await File.WriteAllTextAsync(dir["run.sh"], "#!/bin/sh\necho old\n");
        SetMode(dir["run.sh"], (UnixFileMode)0b111_101_101);
        using (var r = await Http.PostAsync(Url(dir["run.sh"]), Octet("#!/bin/sh\necho new\n")))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        Assert.Equal((UnixFileMode)0b111_101_101, GetMode(dir["run.sh"]));
        Assert.Equal("#!/bin/sh\necho new\n", await File.ReadAllTextAsync(dir["run.sh"]));
    }

    [Fact]
    public async Task Metadata_headers_become_xattrs_and_are_replaced_by_each_upload()
    {
        using var dir = new TempDir();
        var client = new FsConnectClient(Http, json: true);

        using (var request = new HttpRequestMessage(HttpMethod.Post, Url(dir["m.txt"])) { Content = Octet("meta") })
        {
            request.Headers.Add("X-Metadata-Author", "mish");
            request.Headers.Add("x-metadata-purpose", "upload");
            using var response = await Http.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var metadata = (await Json(response))[0].GetProperty("metadata");
            Assert.Equal("mish", metadata.GetProperty("author").GetString());
            Assert.Equal("upload", metadata.GetProperty("purpose").GetString());
        }
        var stat = (await client.CallAsync<StatResponse>("Stat", new StatRequest { Path = dir["m.txt"] })).Entry;
        Assert.Equal(new Dictionary<string, string> { ["author"] = "mish", ["purpose"] = "upload" }, stat.Metadata);
        var listed = (await client.CallAsync<ListDirResponse>("ListDir", new ListDirRequest { Path = dir.Path })).Entries.Single();
        Assert.Equal("mish", listed.Metadata["author"]);

        // An upload without metadata clears the old metadata.
        using (var response = await Http.PostAsync(Url(dir["m.txt"]), Octet("second")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Empty((await client.CallAsync<StatResponse>("Stat", new StatRequest { Path = dir["m.txt"] })).Entry.Metadata);

        // A multipart upload gives every file the same metadata.
        using var form = new MultipartFormDataContent { { Part("1"), "file", dir["m1.txt"] }, { Part("2"), "file", dir["m2.txt"] } };
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/files") { Content = form })
        {
            request.Headers.Add("X-Metadata-Source", "test-suite");
            using var response = await Http.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        foreach (var f in new[] { "m1.txt", "m2.txt" })
        {
            Assert.Equal("test-suite", (await client.CallAsync<StatResponse>("Stat", new StatRequest { Path = dir[f] })).Entry.Metadata["source"]);
        }
    }

    [Theory]
    [InlineData("X-Metadata-", "value", "no key")]
    [InlineData("X-Metadata-KEY_TOO_LONG", "value", "at most 246")]
    [InlineData("X-Metadata-big", "TOTAL_TOO_BIG", "larger than 4096")]
    public async Task Invalid_metadata_is_refused_and_writes_nothing(string header, string value, string message)
    {
        using var dir = new TempDir();
        header = header.Replace("KEY_TOO_LONG", new string('k', 247), StringComparison.Ordinal);
        value = value.Replace("TOTAL_TOO_BIG", new string('v', 4090), StringComparison.Ordinal);
        using var request = new HttpRequestMessage(HttpMethod.Post, Url(dir["bad.txt"])) { Content = Octet("x") };
        Assert.True(request.Headers.TryAddWithoutValidation(header, value));
        using var response = await Http.SendAsync(request);
        await AssertError(response, HttpStatusCode.BadRequest, message);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }
}
