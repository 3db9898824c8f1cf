using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Soak;

/// <summary>How big a soak run is: clients at once, how long, and when the warm-up ends (the RSS baseline).</summary>
internal sealed record SoakOptions(int Clients, TimeSpan Duration, TimeSpan WarmUp);

/// <summary>What a soak run saw: operations per kind, failures (and the first messages), the daemon's RSS after the warm-up and at the end, and the sandboxes it still lists.</summary>
internal sealed record SoakResult(
    IReadOnlyDictionary<string, long> Operations,
    IReadOnlyDictionary<string, long> Failures,
    IReadOnlyList<string> FirstFailures,
    long RssWarmBytes,
    long RssEndBytes,
    int SandboxesStillListed,
    TimeSpan Elapsed)
{
    public long TotalOperations => Operations.Values.Sum();

    public long TotalFailures => Failures.Values.Sum();

    /// <summary>(end - warm) / warm: the issue's aim is within 0.2.</summary>
    public double RssGrowth => RssWarmBytes == 0 ? double.NaN : (double)(RssEndBytes - RssWarmBytes) / RssWarmBytes;

    public override string ToString() =>
        FormattableString.Invariant($"{TotalOperations} operations in {Elapsed.TotalSeconds:0} s ({string.Join(", ", Operations.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}"))}), ") +
        FormattableString.Invariant($"{TotalFailures} failed ({string.Join(", ", Failures.Where(p => p.Value > 0).Select(p => $"{p.Key} {p.Value}"))}), ") +
        FormattableString.Invariant($"paddockd RSS {RssWarmBytes / 1048576.0:0.0} MiB after warm-up, {RssEndBytes / 1048576.0:0.0} MiB at the end ({RssGrowth:+0.0%;-0.0%}), ") +
        FormattableString.Invariant($"{SandboxesStillListed} sandboxes still listed") +
        (FirstFailures.Count > 0 ? "; first failures: " + string.Join(" | ", FirstFailures) : "");
}

/// <summary>
/// A bounded soak of one paddockd (issue 5, "Done when"): N clients, each with its own connections as an SDK user
/// would have, for a fixed time, each holding at most one sandbox and doing a random mix of create, run a command
/// (and check its output), write then read back a file (and check its bytes), and kill. Every operation that throws
/// or answers wrong counts as failed; nothing is retried. Shared by <c>bench/run soak</c> and the short soak test.
/// </summary>
internal sealed class SoakRun(Uri daemonUrl, string apiKey, Func<long> daemonResidentBytes, TextWriter log)
{
    private const int KeptFailureMessages = 10;
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));
    private static readonly TimeSpan OperationTimeout = TimeSpan.FromSeconds(120);
    private static readonly string[] Kinds = ["create", "run", "files", "kill"];

    private readonly ConcurrentDictionary<string, long> _operations = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _failures = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _firstFailures = new();

    public async Task<SoakResult> RunAsync(SoakOptions options, CancellationToken cancellationToken)
    {
        foreach (var kind in Kinds)
        {
            _operations[kind] = 0;
            _failures[kind] = 0;
        }
        var clock = Stopwatch.StartNew();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var rssWarm = 0L;
        var warmUp = Task.Run(async () =>
        {
            await Task.Delay(options.WarmUp, stop.Token);
            rssWarm = daemonResidentBytes();
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"soak: warm-up over after {clock.Elapsed.TotalSeconds:0} s, paddockd RSS {rssWarm / 1048576.0:0.0} MiB, {_operations.Values.Sum()} operations so far"));
        }, CancellationToken.None);
        var deadline = DateTime.UtcNow + options.Duration;
        var clients = Enumerable.Range(0, options.Clients).Select(i => ClientAsync(i, deadline, cancellationToken)).ToList();
        var progress = Task.Run(async () =>
        {
            // One line a minute, so that a 5-minute run shows it is alive; bounded by the run's end.
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromSeconds(60), stop.Token);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"soak: {clock.Elapsed.TotalSeconds:0} s, {_operations.Values.Sum()} operations, {_failures.Values.Sum()} failed"));
            }
        }, CancellationToken.None);
        await Task.WhenAll(clients);
        var elapsed = clock.Elapsed;
        if (rssWarm == 0)
        {
            // A run shorter than its warm-up: the baseline is the end of the load.
            rssWarm = daemonResidentBytes();
        }
        await stop.CancelAsync();
        await Task.WhenAll(warmUp, progress).ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);

        // The end figure after the load has stopped and the kills have been answered, as the warm figure was taken
        // under load: a few seconds for the daemon's own deferred cleanups.
        await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken);
        var rssEnd = daemonResidentBytes();
        using var http = NewClient();
        var listed = await ListAsync(http, cancellationToken);
        return new SoakResult(
            new Dictionary<string, long>(_operations, StringComparer.Ordinal),
            new Dictionary<string, long>(_failures, StringComparer.Ordinal),
            [.. _firstFailures], rssWarm, rssEnd, listed, elapsed);
    }

    private async Task ClientAsync(int index, DateTime deadline, CancellationToken cancellationToken)
    {
        // Seeded per client: a failing run can be replayed with the same mix.
        var random = new Random(20261128 + index);
        using var http = NewClient();
        (string Id, string? Token)? sandbox = null;
        var n = 0;
        // Bounded by time and, against a daemon that answers instantly with errors, by count.
        while (DateTime.UtcNow < deadline && n < 1_000_000 && !cancellationToken.IsCancellationRequested)
        {
            n++;
            if (sandbox is null)
            {
                sandbox = await Measure("create", () => CreateAsync(http, cancellationToken));
                if (sandbox is null)
                {
                    await Task.Delay(1000, cancellationToken); // a failed create: not a tight loop of them
                }
                continue;
            }
            var pick = random.NextDouble();
            var current = sandbox.Value;
            bool ok;
            if (pick < 0.45)
            {
                ok = await Measure("run", () => RunAsync(http, current, index, n, cancellationToken));
            }
            else if (pick < 0.85)
            {
                ok = await Measure("files", () => FilesAsync(http, current, random, index, n, cancellationToken));
            }
            else
            {
                await Measure("kill", () => KillAsync(http, current.Id, cancellationToken));
                sandbox = null;
                continue;
            }
            if (!ok)
            {
                // The sandbox answered wrong: do not keep using it (its kill is counted as an operation too).
                await Measure("kill", () => KillAsync(http, current.Id, cancellationToken));
                sandbox = null;
            }
        }
        if (sandbox is { } last)
        {
            await Measure("kill", () => KillAsync(http, last.Id, CancellationToken.None));
        }
    }

    private async Task<T?> Measure<T>(string kind, Func<Task<T>> operation)
    {
        _operations.AddOrUpdate(kind, 1, (_, v) => v + 1);
        try
        {
            return await operation();
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException or InvalidOperationException or InvalidDataException)
        {
            _failures.AddOrUpdate(kind, 1, (_, v) => v + 1);
            if (_firstFailures.Count < KeptFailureMessages)
            {
                _firstFailures.Enqueue($"{kind}: {ex.GetType().Name}: {ex.Message}");
            }
            return default;
        }
    }

    private static HttpClient NewClient() =>
        new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(2) }) { Timeout = OperationTimeout };

    private async Task<(string Id, string? Token)?> CreateAsync(HttpClient http, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(daemonUrl, "/sandboxes"))
        {
            Content = new StringContent("""{"templateID":"base","timeout":900}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("X-API-Key", apiKey);
        using var response = await http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (response.StatusCode != HttpStatusCode.Created)
        {
            throw new InvalidDataException($"create answered {(int)response.StatusCode}: {Trim(text)}");
        }
        var body = JsonNode.Parse(text)!;
        return ((string)body["sandboxID"]!, (string?)body["envdAccessToken"]);
    }

    private async Task<bool> KillAsync(HttpClient http, string id, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Delete, new Uri(daemonUrl, "/sandboxes/" + id));
        request.Headers.Add("X-API-Key", apiKey);
        using var response = await http.SendAsync(request, cancellationToken);
        return response.StatusCode == HttpStatusCode.NoContent
            ? true
            : throw new InvalidDataException($"kill of {id} answered {(int)response.StatusCode}: {Trim(await response.Content.ReadAsStringAsync(cancellationToken))}");
    }

    private async Task<int> ListAsync(HttpClient http, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(daemonUrl, "/v2/sandboxes"));
        request.Headers.Add("X-API-Key", apiKey);
        using var response = await http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        return response.IsSuccessStatusCode
            ? JsonNode.Parse(text)!.AsArray().Count
            : throw new InvalidDataException($"list answered {(int)response.StatusCode}: {Trim(text)}");
    }

    private HttpRequestMessage AgentRequest(HttpMethod method, (string Id, string? Token) sandbox, string pathAndQuery)
    {
        var request = new HttpRequestMessage(method, new Uri(daemonUrl, pathAndQuery));
        request.Headers.Add("E2b-Sandbox-Id", sandbox.Id);
        request.Headers.Add("E2b-Sandbox-Port", "49983");
        if (sandbox.Token is not null)
        {
            request.Headers.Add("X-Access-Token", sandbox.Token);
        }
        return request;
    }

    /// <summary>Runs <c>echo soak-CLIENT-N</c> through process.Process/Start and checks the output and the exit code.</summary>
    private async Task<bool> RunAsync(HttpClient http, (string Id, string? Token) sandbox, int client, int n, CancellationToken cancellationToken)
    {
        var expected = string.Create(CultureInfo.InvariantCulture, $"soak-{client}-{n}");
        var start = new StartRequest { Process = new ProcessConfig { Cmd = "/bin/sh", Args = { "-c", "echo " + expected } } };
        var json = Encoding.UTF8.GetBytes(JsonFormatter.Default.Format(start));
        var framed = new byte[Envelope.HeaderSize + json.Length];
        Envelope.WriteHeader(framed, 0, json.Length);
        json.CopyTo(framed, Envelope.HeaderSize);
        using var request = AgentRequest(HttpMethod.Post, sandbox, "/process.Process/Start");
        request.Content = new ByteArrayContent(framed);
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/connect+json");
        request.Headers.Add("Connect-Protocol-Version", "1");
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String("user:"u8.ToArray()));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(OperationTimeout);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidDataException($"process.Process/Start in {sandbox.Id} answered {(int)response.StatusCode}: {Trim(await response.Content.ReadAsStringAsync(timeout.Token))}");
        }
        await using var body = await response.Content.ReadAsStreamAsync(timeout.Token);
        var stdout = new StringBuilder();
        var header = new byte[Envelope.HeaderSize];
        // Bounded: echo sends a start, one or two data events and an end.
        for (var frame = 0; frame < 1000; frame++)
        {
            await body.ReadExactlyAsync(header, timeout.Token);
            var (flags, length) = Envelope.ReadHeader(header);
            var payload = new byte[length];
            await body.ReadExactlyAsync(payload, timeout.Token);
            var text = Encoding.UTF8.GetString(payload);
            if ((flags & Envelope.EndStreamFlag) != 0)
            {
                throw new InvalidDataException($"the stream of {sandbox.Id} ended before the process did: {Trim(text)}");
            }
            var e = Parser.Parse<StartResponse>(text).Event;
            if (e?.EventCase == ProcessEvent.EventOneofCase.Data && e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Stdout)
            {
                stdout.Append(e.Data.Stdout.ToStringUtf8());
            }
            else if (e?.EventCase == ProcessEvent.EventOneofCase.End)
            {
                return e.End.ExitCode == 0 && stdout.ToString() == expected + "\n"
                    ? true
                    : throw new InvalidDataException($"echo in {sandbox.Id} exited {e.End.ExitCode} with '{Trim(stdout.ToString())}', expected '{expected}'");
            }
        }
        throw new InvalidDataException($"echo in {sandbox.Id} sent over 1000 frames");
    }

    /// <summary>Writes random bytes (1 to 64 KiB) to a file through POST /files, reads them back with GET /files, compares.</summary>
    private async Task<bool> FilesAsync(HttpClient http, (string Id, string? Token) sandbox, Random random, int client, int n, CancellationToken cancellationToken)
    {
        var bytes = new byte[random.Next(1, 64 * 1024)];
        random.NextBytes(bytes);
        var query = "/files?path=" + Uri.EscapeDataString(string.Create(CultureInfo.InvariantCulture, $"/home/user/soak-{client}-{n % 4}.bin")) + "&username=user";
        using (var upload = AgentRequest(HttpMethod.Post, sandbox, query))
        {
            upload.Content = new ByteArrayContent(bytes);
            upload.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var response = await http.SendAsync(upload, cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                throw new InvalidDataException($"upload to {sandbox.Id} answered {(int)response.StatusCode}: {Trim(await response.Content.ReadAsStringAsync(cancellationToken))}");
            }
        }
        using var download = AgentRequest(HttpMethod.Get, sandbox, query);
        using var got = await http.SendAsync(download, cancellationToken);
        var back = await got.Content.ReadAsByteArrayAsync(cancellationToken);
        return got.IsSuccessStatusCode && back.AsSpan().SequenceEqual(bytes)
            ? true
            : throw new InvalidDataException($"download from {sandbox.Id} answered {(int)got.StatusCode} with {back.Length} bytes, expected the {bytes.Length} written");
    }

    private static string Trim(string text) => text.Length <= 300 ? text : text[..300] + "...";
}
