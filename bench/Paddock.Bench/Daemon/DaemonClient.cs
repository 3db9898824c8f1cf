using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Bench.Daemon;

/// <summary>
/// A sandbox as the create answered it: its id, the agent's access token (null when none was given), and whether the
/// create claimed a warm pool sandbox (its Server-Timing names the step).
/// </summary>
internal readonly record struct CreatedSandbox(string Id, string? AccessToken, bool Pooled = false, string ServerTiming = "")
{
    /// <summary>
    /// The duration of one step of the create's Server-Timing (<c>total</c>: the whole server side), or null; a step
    /// named more than once (the journal) counts with all its entries.
    /// </summary>
    public double? StepMilliseconds(string step)
    {
        double? sum = null;
        foreach (var (name, ms) in Steps())
        {
            if (name == step)
            {
                sum = (sum ?? 0) + ms;
            }
        }
        return sum;
    }

    /// <summary>The steps' names in the order the server gave them, each once, without <c>total</c>.</summary>
    public IEnumerable<string> StepNames() => Steps().Select(s => s.Name).Where(n => n != "total").Distinct(StringComparer.Ordinal);

    private IEnumerable<(string Name, double Milliseconds)> Steps()
    {
        foreach (var entry in ServerTiming.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = entry.Split(';', StringSplitOptions.TrimEntries);
            if (parts.Length == 2 && parts[1].StartsWith("dur=", StringComparison.Ordinal) &&
                double.TryParse(parts[1].AsSpan(4), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var ms))
            {
                yield return (parts[0], ms);
            }
        }
    }
}

/// <summary>
/// What an SDK does against paddockd, written against the wire: the control plane (REST, <c>X-API-Key</c>) and a
/// command through the daemon's proxy (Connect JSON server stream of <c>process.Process/Start</c>, routed by the
/// <c>E2b-Sandbox-Id</c> and <c>E2b-Sandbox-Port</c> headers, as the SDK does with E2B_SANDBOX_URL set).
/// </summary>
internal sealed class DaemonClient : IDisposable
{
    private const string AgentPort = "49983";
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));
    private static readonly byte[] CreateBody = Encoding.UTF8.GetBytes("""{"templateID":"base","timeout":3600}""");

    // Limits other than the daemon's defaults, which the pool's sandboxes have: such a create always starts cold.
    private static readonly byte[] ColdCreateBody = Encoding.UTF8.GetBytes("""{"templateID":"base","timeout":3600,"cpuCount":1}""");

    private readonly HttpClient _http;

    public DaemonClient(Uri baseAddress, string apiKey)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(10),
        };
        _http = new HttpClient(handler)
        {
            BaseAddress = baseAddress,
            DefaultRequestVersion = HttpVersion.Version11,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TimeSpan.FromSeconds(90),
        };
        _http.DefaultRequestHeaders.Add("X-API-Key", apiKey);
    }

    /// <summary><c>POST /sandboxes</c> of the base template; <paramref name="cold"/>: with limits no pool sandbox has.</summary>
    public Task<CreatedSandbox> CreateAsync(CancellationToken cancellationToken, bool cold = false) =>
        CreateAsync(cold ? ColdCreateBody : CreateBody, cancellationToken);

    /// <summary><c>POST /sandboxes</c> of <paramref name="template"/>; <paramref name="cold"/>: with limits no pool sandbox has.</summary>
    public Task<CreatedSandbox> CreateAsync(string template, bool cold, CancellationToken cancellationToken) =>
        CreateAsync(Encoding.UTF8.GetBytes(cold
            ? $$"""{"templateID":"{{template}}","timeout":3600,"cpuCount":1}"""
            : $$"""{"templateID":"{{template}}","timeout":3600}"""), cancellationToken);

    /// <summary>The HTTP client (its base address is the daemon), for requests through the proxy.</summary>
    public HttpClient Http => _http;

    /// <summary><c>commands.run(cmd args...)</c>: returns when its end event (exit 0) arrives.</summary>
    public Task RunToExitAsync(CreatedSandbox sandbox, string cmd, IEnumerable<string> args, CancellationToken cancellationToken)
    {
        var process = new ProcessConfig { Cmd = cmd };
        process.Args.AddRange(args);
        return RunAsync(sandbox, process, waitForExit: true, cancellationToken);
    }

    private async Task<CreatedSandbox> CreateAsync(byte[] createBody, CancellationToken cancellationToken)
    {
        using var content = new ByteArrayContent(createBody);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await _http.PostAsync("/sandboxes", content, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (response.StatusCode != HttpStatusCode.Created)
        {
            throw new HttpRequestException($"POST /sandboxes answered {(int)response.StatusCode}: {text}", null, response.StatusCode);
        }
        var body = JsonNode.Parse(text) ?? throw new InvalidDataException("POST /sandboxes answered null");
        var id = body["sandboxID"]?.GetValue<string>() ?? throw new InvalidDataException($"POST /sandboxes answered no sandboxID: {text}");
        var timing = response.Headers.TryGetValues("Server-Timing", out var values) ? string.Join(", ", values) : "";
        var pooled = timing.Contains("pool-claim", StringComparison.Ordinal);
        return new CreatedSandbox(id, body["envdAccessToken"]?.GetValue<string>(), pooled, timing);
    }

    /// <summary><c>DELETE /sandboxes/{id}</c>; a 404 (already gone) is fine.</summary>
    public async Task KillAsync(string id, CancellationToken cancellationToken)
    {
        using var response = await _http.DeleteAsync($"/sandboxes/{Uri.EscapeDataString(id)}", cancellationToken);
        if (response.StatusCode is not (HttpStatusCode.NoContent or HttpStatusCode.NotFound))
        {
            throw new HttpRequestException($"DELETE /sandboxes/{id} answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }
    }

    /// <summary>Ids of the running sandboxes (<c>GET /sandboxes</c>).</summary>
    public async Task<IReadOnlyList<string>> ListAsync(CancellationToken cancellationToken)
    {
        var text = await _http.GetStringAsync("/sandboxes", cancellationToken);
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.EnumerateArray().Select(s => s.GetProperty("sandboxID").GetString()!).ToList();
    }

    /// <summary>
    /// Runs <c>echo hi</c> in the sandbox and returns as soon as a stdout data event brings <c>hi</c> (the rest of
    /// the stream is drained, untimed, by disposing the response). Throws when the stream ends without it.
    /// </summary>
    public Task EchoHiAsync(CreatedSandbox sandbox, CancellationToken cancellationToken) =>
        RunAsync(sandbox, new ProcessConfig { Cmd = "/bin/echo", Args = { "hi" } }, waitForExit: false, cancellationToken);

    /// <summary><c>commands.run('true')</c>: starts /bin/true and returns when its end event (exit 0) arrives.</summary>
    public Task RunTrueAsync(CreatedSandbox sandbox, CancellationToken cancellationToken) =>
        RunAsync(sandbox, new ProcessConfig { Cmd = "/bin/true" }, waitForExit: true, cancellationToken);

    /// <summary>Runs <paramref name="command"/> with <paramref name="args"/> to its end (exit 0, else an IOException) and returns its stdout.</summary>
    public Task<string> RunForOutputAsync(CreatedSandbox sandbox, string command, IEnumerable<string> args, CancellationToken cancellationToken)
    {
        var process = new ProcessConfig { Cmd = command };
        process.Args.AddRange(args);
        return RunAsync(sandbox, process, waitForExit: true, cancellationToken);
    }

    /// <summary><c>POST /sandboxes</c> with <paramref name="json"/> as the body (a create with options of its own).</summary>
    public async Task<CreatedSandbox> CreateAsync(string json, CancellationToken cancellationToken)
    {
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using var response = await _http.PostAsync("/sandboxes", content, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (response.StatusCode != HttpStatusCode.Created)
        {
            throw new HttpRequestException($"POST /sandboxes answered {(int)response.StatusCode}: {text}", null, response.StatusCode);
        }
        var body = JsonNode.Parse(text) ?? throw new InvalidDataException("POST /sandboxes answered null");
        var id = body["sandboxID"]?.GetValue<string>() ?? throw new InvalidDataException($"POST /sandboxes answered no sandboxID: {text}");
        return new CreatedSandbox(id, body["envdAccessToken"]?.GetValue<string>());
    }

    private async Task<string> RunAsync(CreatedSandbox sandbox, ProcessConfig process, bool waitForExit, CancellationToken cancellationToken)
    {
        var request = new StartRequest { Process = process };
        var json = Encoding.UTF8.GetBytes(JsonFormatter.Default.Format(request));
        var framed = new byte[Envelope.HeaderSize + json.Length];
        Envelope.WriteHeader(framed, 0, json.Length);
        json.CopyTo(framed, Envelope.HeaderSize);
        using var message = new HttpRequestMessage(HttpMethod.Post, "/process.Process/Start") { Content = new ByteArrayContent(framed) };
        message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/connect+json");
        message.Headers.Add("Connect-Protocol-Version", "1");
        message.Headers.Add("E2b-Sandbox-Id", sandbox.Id);
        message.Headers.Add("E2b-Sandbox-Port", AgentPort);
        if (sandbox.AccessToken is { } token)
        {
            message.Headers.Add("X-Access-Token", token);
        }
        using var response = await _http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new HttpRequestException($"process.Process/Start answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        var header = new byte[Envelope.HeaderSize];
        var stdout = new StringBuilder();
        // Bounded: a Start stream of echo is a handful of events, the egress bench's a few hundred.
        for (var frames = 0; frames < 100_000; frames++)
        {
            await body.ReadExactlyAsync(header, cancellationToken);
            var (flags, length) = Envelope.ReadHeader(header);
            var payload = new byte[length];
            await body.ReadExactlyAsync(payload, cancellationToken);
            var text = Encoding.UTF8.GetString(payload);
            if ((flags & Envelope.EndStreamFlag) != 0)
            {
                throw new IOException($"the Start stream of {process.Cmd} ended early (stdout so far '{stdout}'): {text}");
            }
            var e = Parser.Parse<StartResponse>(text).Event;
            if (e?.EventCase == ProcessEvent.EventOneofCase.Data && e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Stdout)
            {
                stdout.Append(e.Data.Stdout.ToStringUtf8());
                if (!waitForExit && stdout.ToString().Contains("hi", StringComparison.Ordinal))
                {
                    return stdout.ToString();
                }
            }
            if (e?.EventCase == ProcessEvent.EventOneofCase.End)
            {
                if (waitForExit && e.End.ExitCode == 0)
                {
                    return stdout.ToString();
                }
                throw new IOException($"{process.Cmd} ended (exit {e.End.ExitCode}) with stdout '{stdout}'");
            }
        }
        throw new IOException($"the Start stream of {process.Cmd} sent 100000 events without its result");
    }

    public void Dispose() => _http.Dispose();
}
