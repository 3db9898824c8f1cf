using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Security.Tests;

/// <summary>The output of a command run in a sandbox.</summary>
internal sealed record CommandResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}; stdout: {Stdout}; stderr: {Stderr}";
}

/// <summary>
/// A sandbox of the daemon under test, driven the way the SDK drives one: REST for its life, and the agent's Connect
/// and /files routes through the daemon's listener (E2b-Sandbox-Id / E2b-Sandbox-Port headers, X-Access-Token).
/// Disposing kills it.
/// </summary>
internal sealed class TestSandbox : IAsyncDisposable
{
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));
    private readonly PaddockdProcess _daemon;
    private readonly HttpClient _http;

    private TestSandbox(PaddockdProcess daemon, HttpClient http, string id, string? token, string isolation)
    {
        _daemon = daemon;
        _http = http;
        Id = id;
        Token = token;
        Isolation = isolation;
    }

    public string Id { get; }

    /// <summary>The tier it runs on ("runc" or "gvisor"), as GET /sandboxes/{id} says.</summary>
    public string Isolation { get; }

    public string? Token { get; }

    public static async Task<TestSandbox> CreateAsync(PaddockdProcess daemon, HttpClient http, string extraJson = "")
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(daemon.Url, "/sandboxes"))
        {
            Content = new StringContent($$"""{"templateID":"base","timeout":900{{extraJson}}}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("X-API-Key", daemon.ApiKey);
        using var response = await http.SendAsync(request, timeout.Token);
        var text = await response.Content.ReadAsStringAsync(timeout.Token);
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"create answered {(int)response.StatusCode}: {text}");
        var body = JsonNode.Parse(text)!;
        var id = (string)body["sandboxID"]!;
        using var get = new HttpRequestMessage(HttpMethod.Get, new Uri(daemon.Url, "/sandboxes/" + id));
        get.Headers.Add("X-API-Key", daemon.ApiKey);
        using var detail = await http.SendAsync(get, timeout.Token);
        var detailText = await detail.Content.ReadAsStringAsync(timeout.Token);
        Assert.True(detail.StatusCode == HttpStatusCode.OK, $"GET /sandboxes/{id} answered {(int)detail.StatusCode}: {detailText}");
        return new TestSandbox(daemon, http, id, (string?)body["envdAccessToken"], (string)JsonNode.Parse(detailText)!["isolation"]!);
    }

    /// <summary>Whether GET /sandboxes/{id} still finds it (false: 404, it ended).</summary>
    public async Task<bool> ExistsAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var get = new HttpRequestMessage(HttpMethod.Get, new Uri(_daemon.Url, "/sandboxes/" + Id));
        get.Headers.Add("X-API-Key", _daemon.ApiKey);
        using var response = await _http.SendAsync(get, timeout.Token);
        return response.StatusCode != HttpStatusCode.NotFound;
    }

    /// <summary>A request to the sandbox's agent through the daemon.</summary>
    public HttpRequestMessage AgentRequest(HttpMethod method, string pathAndQuery, int port = 49983)
    {
        var request = new HttpRequestMessage(method, new Uri(_daemon.Url, pathAndQuery));
        request.Headers.Add("E2b-Sandbox-Id", Id);
        request.Headers.Add("E2b-Sandbox-Port", port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (Token is not null)
        {
            request.Headers.Add("X-Access-Token", Token);
        }
        return request;
    }

    /// <summary>Runs <paramref name="script"/> with /bin/sh -c as <paramref name="user"/> and collects its output.</summary>
    public async Task<CommandResult> RunAsync(string script, string user = "user", TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(45));
        using var response = await StartAsync(script, user, cts.Token);
        await using var body = await response.Content.ReadAsStreamAsync(cts.Token);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        await foreach (var e in EventsAsync(body, cts.Token))
        {
            if (e.EventCase == ProcessEvent.EventOneofCase.Data)
            {
                // Bounded: an attack's output must not grow the test process.
                if (e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Stdout && stdout.Length < 1 << 20)
                {
                    stdout.Append(e.Data.Stdout.ToStringUtf8());
                }
                else if (e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Stderr && stderr.Length < 1 << 20)
                {
                    stderr.Append(e.Data.Stderr.ToStringUtf8());
                }
            }
            else if (e.EventCase == ProcessEvent.EventOneofCase.End)
            {
                return new CommandResult(e.End.ExitCode, stdout.ToString(), stderr.ToString());
            }
        }
        throw new IOException($"the stream ended before the process did; stdout so far: {stdout}");
    }

    /// <summary>Starts a command and returns the open response; the caller reads (or does not read) its events.</summary>
    public async Task<HttpResponseMessage> StartAsync(string script, string user, CancellationToken cancellationToken)
    {
        var start = new StartRequest { Process = new ProcessConfig { Cmd = "/bin/sh", Args = { "-c", script } } };
        var json = Encoding.UTF8.GetBytes(JsonFormatter.Default.Format(start));
        var framed = new byte[Envelope.HeaderSize + json.Length];
        Envelope.WriteHeader(framed, 0, json.Length);
        json.CopyTo(framed, Envelope.HeaderSize);
        using var request = AgentRequest(HttpMethod.Post, "/process.Process/Start");
        request.Content = new ByteArrayContent(framed);
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/connect+json");
        request.Headers.Add("Connect-Protocol-Version", "1");
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":")));
        var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            response.Dispose();
            throw new IOException($"process.Process/Start answered {(int)response.StatusCode}: {text}");
        }
        return response;
    }

    public static async IAsyncEnumerable<ProcessEvent> EventsAsync(Stream body, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var header = new byte[Envelope.HeaderSize];
        while (true)
        {
            try
            {
                await body.ReadExactlyAsync(header, cancellationToken);
            }
            catch (EndOfStreamException)
            {
                yield break;
            }
            var (flags, length) = Envelope.ReadHeader(header);
            var payload = new byte[length];
            await body.ReadExactlyAsync(payload, cancellationToken);
            var text = Encoding.UTF8.GetString(payload);
            if ((flags & Envelope.EndStreamFlag) != 0)
            {
                if (text.Contains("\"error\"", StringComparison.Ordinal))
                {
                    throw new IOException("the agent ended the stream with an error: " + text);
                }
                yield break;
            }
            if (Parser.Parse<StartResponse>(text).Event is { } e)
            {
                yield return e;
            }
        }
    }

    /// <summary>A unary Connect call with the JSON codec (filesystem.Filesystem/Stat, ...): status and body.</summary>
    public async Task<(HttpStatusCode Status, string Body)> UnaryAsync(string method, string json, string user = "user")
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var request = AgentRequest(HttpMethod.Post, "/" + method);
        request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        request.Headers.Add("Connect-Protocol-Version", "1");
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":")));
        using var response = await _http.SendAsync(request, cts.Token);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(cts.Token));
    }

    /// <summary>GET /files?path=...: status and body.</summary>
    public async Task<(HttpStatusCode Status, string Body)> DownloadAsync(string path, string user = "user")
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var request = AgentRequest(HttpMethod.Get, "/files?path=" + Uri.EscapeDataString(path) + "&username=" + user);
        using var response = await _http.SendAsync(request, cts.Token);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(cts.Token));
    }

    /// <summary>POST /files?path=... with an octet-stream body: status and body.</summary>
    public async Task<(HttpStatusCode Status, string Body)> UploadAsync(string path, string content, string user = "user")
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var request = AgentRequest(HttpMethod.Post, "/files?path=" + Uri.EscapeDataString(path) + "&username=" + user);
        request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(content));
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using var response = await _http.SendAsync(request, cts.Token);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(cts.Token));
    }

    /// <summary>The writable layer's size now, as GET /sandboxes/{id}/metrics says (its latest sample's diskUsed).</summary>
    public async Task<long> DiskUsedAsync(CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_daemon.Url, $"/sandboxes/{Id}/metrics"));
        request.Headers.Add("X-API-Key", _daemon.ApiKey);
        using var response = await _http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET /sandboxes/{Id}/metrics answered {(int)response.StatusCode}: {text}");
        var samples = JsonNode.Parse(text)!.AsArray();
        Assert.NotEmpty(samples);
        return (long)samples[^1]!["diskUsed"]!;
    }

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var request = new HttpRequestMessage(HttpMethod.Delete, new Uri(_daemon.Url, "/sandboxes/" + Id));
        request.Headers.Add("X-API-Key", _daemon.ApiKey);
        try
        {
            using var response = await _http.SendAsync(request, cts.Token);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException)
        {
            // The daemon is gone or stuck: the fixture's host cleanup removes what is left.
        }
    }
}
