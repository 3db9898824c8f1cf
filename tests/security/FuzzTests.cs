using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Xunit.Abstractions;

namespace Paddock.Security.Tests;

/// <summary>
/// Hostile API input (issue 5, item 5): a bounded fuzz run with a fixed seed over every REST route of the daemon and
/// every Connect method and HTTP route of the agent (through the daemon's proxy). Malformed JSON and protobuf, huge
/// bodies, wrong types, unicode and control characters in ids and paths. No answer may be a 5xx (except the proxy's
/// documented 502 for a sandbox or port that is not there), no request may hang (each has a timeout), and the daemon
/// and the sandbox's agent must be alive at the end.
/// </summary>
[Collection(BatteryCollection.Name)]
public sealed class FuzzTests(BatteryFixture fixture, ITestOutputHelper output)
{
    private const int Seed = 20261128;
    private const int Requests = 2000;
    private static readonly TimeSpan PerRequest = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan Budget = TimeSpan.FromMinutes(6);

    private static readonly (string Method, string Path)[] RestRoutes =
    [
        ("POST", "/sandboxes"), ("POST", "/v2/sandboxes"), ("GET", "/sandboxes"), ("GET", "/v2/sandboxes"),
        ("GET", "/sandboxes/metrics"), ("GET", "/sandboxes/{id}"), ("DELETE", "/sandboxes/{id}"),
        ("POST", "/sandboxes/{id}/timeout"), ("POST", "/sandboxes/{id}/connect"), ("POST", "/v2/sandboxes/{id}/connect"),
        ("POST", "/sandboxes/{id}/refreshes"), ("GET", "/sandboxes/{id}/metrics"), ("GET", "/sandboxes/{id}/logs"),
        ("GET", "/v2/sandboxes/{id}/logs"), ("POST", "/sandboxes/{id}/pause"), ("POST", "/sandboxes/{id}/resume"),
        ("GET", "/templates"), ("GET", "/health"),
    ];

    private static readonly string[] ConnectMethods =
    [
        "process.Process/Start", "process.Process/Connect", "process.Process/List", "process.Process/Update",
        "process.Process/StreamInput", "process.Process/SendInput", "process.Process/SendSignal",
        "filesystem.Filesystem/Stat", "filesystem.Filesystem/MakeDir", "filesystem.Filesystem/Move",
        "filesystem.Filesystem/ListDir", "filesystem.Filesystem/Remove", "filesystem.Filesystem/WatchDir",
        "filesystem.Filesystem/CreateWatcher", "filesystem.Filesystem/GetWatcherEvents", "filesystem.Filesystem/RemoveWatcher",
    ];

    private static readonly string[] ContentTypes =
    [
        "application/json", "application/proto", "application/connect+json", "application/connect+proto",
        "application/grpc", "text/plain", "multipart/form-data; boundary=x", "application/octet-stream", "",
        "application/json; charset=utf-16", "application/connect+json; charset=\u00ff",
    ];

    /// <summary>Strings for ids, paths and values: unicode, control characters, traversal, format strings, long.</summary>
    private static readonly string[] Atoms =
    [
        "", " ", ".", "..", "../../../../etc/passwd", "/", "//", "\0", "\u0001\u0002\u0003", "\r\n", "\t", "%00", "%",
        "%2e%2e%2f", "\u202e\u202d", "\ud83d\ude00", "\u00e9\u00e8", "\ufeff", "\uffff", "\u0000/x", "a\nb", "${jndi:x}",
        "%s%n%x", "'; drop table sandboxes; --", "<script>", "\\\\", "NaN", "-1", "0", "99999999999999999999",
        "1e400", "true", "null", "[]", "{}", "base", "/home/user", "/proc/self/mem", "/dev/zero", "CON",
    ];

    [Fact]
    public async Task Hostile_requests_get_no_5xx_no_hang_and_no_crash()
    {
        await using var target = await TestSandbox.CreateAsync(fixture.Daemon, fixture.Http);
        var random = new Random(Seed);
        using var http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromSeconds(30) }) { Timeout = Timeout.InfiniteTimeSpan };
        var failures = new List<string>();
        var statuses = new SortedDictionary<int, int>();
        var clock = Stopwatch.StartNew();
        var sent = 0;

        for (; sent < Requests && clock.Elapsed < Budget && failures.Count < 20; sent++)
        {
            var (request, allow502, describe) = random.Next(3) switch
            {
                0 => Rest(random),
                1 => Connect(random, target),
                _ => Files(random, target),
            };
            using (request)
            {
                using var cts = new CancellationTokenSource(PerRequest);
                try
                {
                    // Headers within the timeout; then at most a little of the body (streams may stay open by design).
                    using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
                    var status = (int)response.StatusCode;
                    statuses[status] = statuses.GetValueOrDefault(status) + 1;
                    if (status >= 500 && !(status == 502 && allow502))
                    {
                        var body = await ReadSomeAsync(response, cts.Token);
                        failures.Add($"#{sent} {describe}: {status} {body}");
                    }
                }
                catch (OperationCanceledException)
                {
                    failures.Add($"#{sent} {describe}: no answer within {PerRequest.TotalSeconds} s");
                }
                catch (HttpRequestException ex)
                {
                    // A connection the server closed: acceptable for garbage only if the server lives on (checked next).
                    statuses[0] = statuses.GetValueOrDefault(0) + 1;
                    if (!fixture.Daemon.IsAlive)
                    {
                        failures.Add($"#{sent} {describe}: paddockd died ({ex.Message})");
                        break;
                    }
                }
            }
        }

        var summary = $"{sent} requests in {clock.Elapsed.TotalSeconds:0} s; statuses {string.Join(", ", statuses.Select(kv => $"{kv.Key}x{kv.Value}"))}";
        output.WriteLine(summary);
        Assert.True(failures.Count == 0, summary + "\n" + string.Join("\n", failures));
        Assert.True(sent >= Requests || clock.Elapsed >= Budget, summary);
        Assert.True(fixture.Daemon.IsAlive, "paddockd died: " + fixture.Daemon.Log);
        Assert.Equal("ok\n", (await target.RunAsync("echo ok")).Stdout);
        using var health = await http.GetAsync(new Uri(fixture.Daemon.Url, "/health"));
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    private static async Task<string> ReadSomeAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            var buffer = new byte[512];
            var n = await body.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellationToken);
            return Encoding.UTF8.GetString(buffer, 0, n);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or HttpRequestException)
        {
            return "(body unreadable: " + ex.Message + ")";
        }
    }

    private (HttpRequestMessage, bool, string) Rest(Random random)
    {
        var (method, path) = RestRoutes[random.Next(RestRoutes.Length)];
        var id = Escape(Pick(random));
        var uri = path.Replace("{id}", id, StringComparison.Ordinal);
        if (random.Next(4) == 0)
        {
            uri += "?" + Escape(Pick(random)) + "=" + Escape(Pick(random)) + "&limit=" + Escape(Pick(random)) + "&state=" + Escape(Pick(random));
        }
        var request = new HttpRequestMessage(new HttpMethod(method), new Uri(fixture.Daemon.Url, uri));
        if (random.Next(10) != 0)
        {
            request.Headers.TryAddWithoutValidation("X-API-Key", random.Next(20) == 0 ? Pick(random) : fixture.Daemon.ApiKey);
        }
        if (method != "GET" || random.Next(5) == 0)
        {
            request.Content = Body(random, JsonBodies);
        }
        return (request, false, $"{method} {uri} [{Describe(request.Content)}]");
    }

    private (HttpRequestMessage, bool, string) Connect(Random random, TestSandbox target)
    {
        var method = ConnectMethods[random.Next(ConnectMethods.Length)];
        var fuzzTarget = random.Next(10) == 0;
        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(fixture.Daemon.Url, "/" + method));
        request.Headers.TryAddWithoutValidation("E2b-Sandbox-Id", fuzzTarget ? Pick(random) : target.Id);
        request.Headers.TryAddWithoutValidation("E2b-Sandbox-Port", fuzzTarget ? Pick(random) : "49983");
        if (target.Token is not null)
        {
            request.Headers.TryAddWithoutValidation("X-Access-Token", target.Token);
        }
        if (random.Next(2) == 0)
        {
            request.Headers.TryAddWithoutValidation("Connect-Protocol-Version", random.Next(5) == 0 ? Pick(random) : "1");
        }
        // Always as "user": a fuzzed Remove or Move must not break the sandbox's system files.
        request.Headers.TryAddWithoutValidation("Authorization", random.Next(8) == 0 ? "Basic " + Pick(random) : "Basic dXNlcjo=");
        if (random.Next(6) == 0)
        {
            request.Headers.TryAddWithoutValidation("Connect-Timeout-Ms", Pick(random));
        }
        request.Content = Body(random, ConnectBodies);
        return (request, fuzzTarget, $"{method} [{Describe(request.Content)}]");
    }

    private (HttpRequestMessage, bool, string) Files(Random random, TestSandbox target)
    {
        var get = random.Next(2) == 0;
        var query = "/files?path=" + Escape(Pick(random)) + (random.Next(3) == 0 ? "&username=" + Escape(Pick(random)) : "") +
            (random.Next(5) == 0 ? "&signature=" + Escape(Pick(random)) + "&signature_expiration=" + Escape(Pick(random)) : "");
        var request = new HttpRequestMessage(get ? HttpMethod.Get : HttpMethod.Post, new Uri(fixture.Daemon.Url, query));
        request.Headers.TryAddWithoutValidation("E2b-Sandbox-Id", target.Id);
        request.Headers.TryAddWithoutValidation("E2b-Sandbox-Port", "49983");
        if (target.Token is not null)
        {
            request.Headers.TryAddWithoutValidation("X-Access-Token", target.Token);
        }
        if (!get)
        {
            request.Content = Body(random, MultipartBodies);
        }
        return (request, false, $"{request.Method} {query} [{Describe(request.Content)}]");
    }

    private static HttpContent Body(Random random, Func<Random, byte[]>[] generators)
    {
        byte[] bytes = random.Next(6) switch
        {
            0 => RandomBytes(random, random.Next(0, 4096)),
            1 when random.Next(8) == 0 => Huge(random),
            _ => generators[random.Next(generators.Length)](random),
        };
        var content = new ByteArrayContent(bytes);
        var type = ContentTypes[random.Next(ContentTypes.Length)];
        if (type.Length > 0)
        {
            content.Headers.TryAddWithoutValidation("Content-Type", type);
        }
        return content;
    }

    private static readonly Func<Random, byte[]>[] JsonBodies =
    [
        r => Utf8($$"""{"templateID":{{Json(r)}},"timeout":{{Value(r)}}}"""),
        r => Utf8($$"""{"templateID":"no-such-template-{{r.Next()}}","metadata":{{Value(r)}},"envVars":{{Value(r)}}}"""),
        r => Utf8($$"""{"templateID":"no-such-template","cpuCount":{{Value(r)}},"memoryMB":{{Value(r)}},"diskSizeMB":{{Value(r)}}}"""),
        r => Utf8($$"""{"timeout":{{Value(r)}},"autoPause":{{Value(r)}},"network":{{Value(r)}},"secure":{{Value(r)}}}"""),
        r => Utf8(new string('[', r.Next(1, 20000)) + new string(']', r.Next(0, 3))),
        r => Utf8($$$"""{"templateID":"no-such-template","metadata":{"{{{Pick(r)}}}":"{{{Pick(r)}}}"},"envVars":{"{{{Pick(r)}}}":"x"}}"""),
        r => Utf8("""{"templateID":"no-such""" + Pick(r)),
        r => [0xEF, 0xBB, 0xBF, 0x7B, 0xC3, 0x28, 0x7D],
        r => Utf8($$"""{"templateID":"no-such-template","timeout":{{Value(r)}},"templateID":{{Value(r)}}}"""),
    ];

    private static readonly Func<Random, byte[]>[] ConnectBodies =
    [
        r => Utf8($$"""{"path":{{Json(r)}},"depth":{{Value(r)}}}"""),
        r => Utf8($$"""{"source":{{Json(r)}},"destination":{{Json(r)}}}"""),
        r => Utf8($$"""{"process":{"cmd":{{Json(r)}},"args":[{{Json(r)}}],"envs":{{Value(r)}},"cwd":{{Json(r)}}},"pty":{{Value(r)}}}"""),
        r => Utf8($$$"""{"process":{"pid":{{{Value(r)}}}},"signal":{{{Value(r)}}},"input":{"stdin":{{{Json(r)}}}}}"""),
        r => Utf8($$"""{"watcherId":{{Json(r)}},"path":{{Json(r)}},"recursive":{{Value(r)}}}"""),
        r => Envelope(r, Utf8($$"""{"path":{{Json(r)}}}""")),
        r => Envelope(r, RandomBytes(r, r.Next(0, 256))),
        // An envelope that claims more bytes than follow, or 4 GiB.
        r => [0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3],
        r => [(byte)r.Next(256), 0, 0, 0, 10, 0x7B],
        // Protobuf: field 1 (path) as a length-delimited string with a bad length, varints that never end.
        r => [0x0A, 0xFF, 0xFF, 0xFF, 0x0F, 0x41],
        r => [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        r => Utf8("""{"path":"\ud800"}"""),
    ];

    private static readonly Func<Random, byte[]>[] MultipartBodies =
    [
        r => Utf8($"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{Pick(r)}\"\r\n\r\ndata\r\n--x--\r\n"),
        r => Utf8("--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nno filename\r\n--x"),
        r => Utf8("--y\r\n\r\n--y--"),
        r => RandomBytes(r, r.Next(0, 2048)),
    ];

    private static byte[] Envelope(Random random, byte[] payload)
    {
        var framed = new byte[5 + payload.Length];
        framed[0] = (byte)(random.Next(4) == 0 ? random.Next(256) : 0);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(framed.AsSpan(1), (uint)payload.Length);
        payload.CopyTo(framed, 5);
        return framed;
    }

    /// <summary>8 MiB of JSON-ish bytes, for the body size limits.</summary>
    private static byte[] Huge(Random random)
    {
        var bytes = new byte[8 << 20];
        Array.Fill(bytes, (byte)'a');
        Utf8("{\"templateID\":\"").CopyTo(bytes, 0);
        bytes[^2] = (byte)'"';
        bytes[^1] = (byte)'}';
        return random.Next(2) == 0 ? bytes : bytes[..^1];
    }

    private static string Pick(Random random) => random.Next(5) switch
    {
        0 => new string((char)random.Next(0x20, 0x7F), random.Next(1, 3000)),
        1 => string.Concat(Enumerable.Range(0, random.Next(1, 6)).Select(_ => Atoms[random.Next(Atoms.Length)])),
        _ => Atoms[random.Next(Atoms.Length)],
    };

    private static string Json(Random random) => random.Next(4) == 0 ? Value(random) : System.Text.Json.JsonSerializer.Serialize(Pick(random));

    private static string Value(Random random) => random.Next(10) switch
    {
        0 => "null",
        1 => "-1",
        2 => "1e400",
        3 => "99999999999999999999999",
        4 => "true",
        5 => "[1,{},\"x\"]",
        6 => """{"a":{"b":[]}}""",
        7 => "\"" + Pick(random).Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "'", StringComparison.Ordinal) + "\"",
        8 => "0.5",
        _ => random.Next().ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    private static byte[] RandomBytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    private static string Escape(string s)
    {
        s = s.Length > 4000 ? s[..4000] : s;
        try
        {
            return Uri.EscapeDataString(s);
        }
        catch (UriFormatException)
        {
            // a surrogate cut in half: send its replacement
            return Uri.EscapeDataString(s.Replace('\ud83d', '?').Replace('\ude00', '?'));
        }
    }

    private static string Describe(HttpContent? content) =>
        content is null ? "no body" : $"{content.Headers.ContentType?.ToString() ?? "no type"}, {content.Headers.ContentLength ?? -1} bytes";
}
