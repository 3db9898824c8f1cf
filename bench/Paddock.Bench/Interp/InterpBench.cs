using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using Paddock.Bench.Daemon;
using Paddock.Bench.Reporting;

namespace Paddock.Bench.Interp;

/// <summary>
/// <c>paddock-bench interp</c>: the code interpreter (issue 16) through paddockd's proxy, against baselines measured
/// in the same run: a warm <c>runCode('1+1')</c> against the same statement as <c>commands.run('python3 -c ...')</c>
/// and a bare <c>python3 -c</c> spawn on the host; create of a code-interpreter sandbox to the first result of
/// <c>print(1)</c>, cold and from a warm pool; a context's create.
/// </summary>
internal static class InterpBench
{
    public const string Usage = """
        usage: paddock-bench interp [options]
          --binary PATH       paddockd (default: artifacts/paddockd/paddockd under the repository)
          --templates-dir DIR built templates; code-interpreter is built there if missing (default /var/lib/paddock-test/templates)
          --round-trips N     runCode('1+1') round trips, and as many of each baseline (default 50)
          --runs N            creates to first result, cold and pooled, and context creates (default 5)
          --pool N            paddockd's warm pool of code-interpreter for the pooled figure (default 2; 0: skip it)
          --json              also print the figures as one JSON line at the end
        Needs root and runc (the runc tier).
        """;

    private const string Template = "code-interpreter";

    public static async Task<int> RunAsync(ReadOnlyMemory<string> args)
    {
        var roundTrips = 50;
        var runs = 5;
        var pool = 2;
        var json = false;
        var binary = DaemonCommand.DefaultBinary();
        var templates = "/var/lib/paddock-test/templates";
        var span = args.ToArray();
        for (var i = 0; i < span.Length; i++)
        {
            string Next() => i + 1 < span.Length ? span[++i] : throw new ArgumentException($"{span[i]} needs a value");
            int Count() => int.TryParse(Next(), CultureInfo.InvariantCulture, out var n) && n >= 0 ? n : throw new ArgumentException($"{span[i]} needs a count");
            switch (span[i])
            {
                case "--round-trips": roundTrips = Math.Max(1, Count()); break;
                case "--runs": runs = Math.Max(1, Count()); break;
                case "--pool": pool = Count(); break;
                case "--binary": binary = Next(); break;
                case "--templates-dir": templates = Next(); break;
                case "--json": json = true; break;
                default:
                    Console.Error.WriteLine($"paddock-bench: unknown option '{span[i]}'\n{Usage}");
                    return 2;
            }
        }
        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
        var log = Console.Error;
        var options = new DaemonBenchOptions { Binary = binary, TemplatesDir = templates, Template = Template, PoolSize = pool, PoolRefill = Math.Max(1, pool) };
        log.WriteLine($"paddock-bench interp: {binary}, {Environment.ProcessorCount} CPUs; building {Template} if missing (minutes)");
        await using var daemon = await PaddockdProcess.StartAsync(options, TimeSpan.FromMinutes(30), log, cancel.Token);
        using var client = new DaemonClient(daemon.Url, daemon.ApiKey);
        var report = new Report();
        var created = new List<CreatedSandbox>();
        try
        {
            // Cold: limits no pool member has, so the create starts a sandbox, its server and its python kernel.
            var cold = new Samples("ms", Direction.LowerIsBetter);
            CreatedSandbox warm = default;
            for (var run = 0; run < runs; run++)
            {
                var clock = Stopwatch.StartNew();
                var sandbox = await client.CreateAsync(Template, cold: true, cancel.Token);
                await ExpectAsync(client, sandbox, "print(1)", "\"stdout\",\"text\":\"1\\n\"", cancel.Token);
                cold.Add(clock.Elapsed.TotalMilliseconds);
                created.Add(sandbox);
                warm = sandbox;
                log.WriteLine($"  cold create to first result: {clock.Elapsed.TotalMilliseconds:0} ms");
            }
            report.AddFact("cold create of code-interpreter to first result of print(1) p50", "interp_cold_create_to_result_p50_ms", "ms", cold.P50);

            if (pool > 0)
            {
                var pooled = new Samples("ms", Direction.LowerIsBetter);
                var claimed = 0;
                // Bounded: runs creates, each waiting up to PoolFillLimit for the pool to hold a member.
                for (var run = 0; run < runs; run++)
                {
                    await Task.Delay(TimeSpan.FromSeconds(2), cancel.Token);
                    var clock = Stopwatch.StartNew();
                    var sandbox = await client.CreateAsync(Template, cold: false, cancel.Token);
                    await ExpectAsync(client, sandbox, "print(1)", "\"stdout\",\"text\":\"1\\n\"", cancel.Token);
                    pooled.Add(clock.Elapsed.TotalMilliseconds);
                    claimed += sandbox.Pooled ? 1 : 0;
                    created.Add(sandbox);
                    log.WriteLine($"  {(sandbox.Pooled ? "pooled" : "cold (pool empty)")} create to first result: {clock.Elapsed.TotalMilliseconds:0} ms; {sandbox.ServerTiming}");
                }
                report.AddFact($"pooled create of code-interpreter to first result p50 ({claimed} of {runs} claimed from the pool)", "interp_pooled_create_to_result_p50_ms", "ms", pooled.P50);
            }

            // Warm round trips on the default python context of one sandbox.
            for (var i = 0; i < 5; i++)
            {
                await ExpectAsync(client, warm, "1+1", "\"text\":\"2\"", cancel.Token);
            }
            var runCode = new Samples("ms", Direction.LowerIsBetter);
            for (var i = 0; i < roundTrips; i++)
            {
                var clock = Stopwatch.StartNew();
                await ExpectAsync(client, warm, "1+1", "\"text\":\"2\"", cancel.Token);
                runCode.Add(clock.Elapsed.TotalMilliseconds);
            }
            var viaCommands = new Samples("ms", Direction.LowerIsBetter);
            for (var i = 0; i < roundTrips; i++)
            {
                var clock = Stopwatch.StartNew();
                await client.RunToExitAsync(warm, "python3", ["-c", "1+1"], cancel.Token);
                viaCommands.Add(clock.Elapsed.TotalMilliseconds);
            }
            var bare = new Samples("ms", Direction.LowerIsBetter);
            var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
            for (var i = 0; i < roundTrips; i++)
            {
                var clock = Stopwatch.StartNew();
                using var process = Process.Start(new ProcessStartInfo(python) { ArgumentList = { "-c", "1+1" }, UseShellExecute = false })!;
                await process.WaitForExitAsync(cancel.Token);
                bare.Add(clock.Elapsed.TotalMilliseconds);
            }
            report.Add(new Comparison("runCode('1+1') on a warm context vs commands.run('python3 -c 1+1')", "interp_runcode_vs_commands", runCode, "commands.run python3 -c", viaCommands, 1.0));
            report.Add(new Comparison("runCode('1+1') on a warm context vs a bare python3 -c spawn on the host", "interp_runcode_vs_bare", runCode, "bare python3 -c", bare, 1.0));
            report.AddFact("runCode('1+1') round trip p50 (aim: under 5 ms)", "interp_runcode_p50_ms", "ms", runCode.P50);

            var contexts = new Samples("ms", Direction.LowerIsBetter);
            for (var run = 0; run < runs; run++)
            {
                var clock = Stopwatch.StartNew();
                var id = await CreateContextAsync(client, warm, cancel.Token);
                contexts.Add(clock.Elapsed.TotalMilliseconds);
                using var delete = Request(HttpMethod.Delete, $"/contexts/{id}", warm, null);
                using var _ = await client.Http.SendAsync(delete, cancel.Token);
            }
            report.AddFact("context create (a new python kernel, ready) p50", "interp_context_create_p50_ms", "ms", contexts.P50);
        }
        finally
        {
            foreach (var sandbox in created)
            {
                await client.KillAsync(sandbox.Id, CancellationToken.None);
            }
        }
        Console.Out.WriteLine();
        report.PrintTable(Console.Out);
        if (json)
        {
            report.PrintJson(Console.Out);
        }
        return 0;
    }

    private static HttpRequestMessage Request(HttpMethod method, string path, CreatedSandbox sandbox, string? body)
    {
        var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8);
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        }
        request.Headers.Add("E2b-Sandbox-Id", sandbox.Id);
        request.Headers.Add("E2b-Sandbox-Port", "49999");
        return request;
    }

    /// <summary>Runs a cell through the proxy and checks that its response holds <paramref name="expected"/>.</summary>
    private static async Task ExpectAsync(DaemonClient client, CreatedSandbox sandbox, string code, string expected, CancellationToken cancellationToken)
    {
        using var request = Request(HttpMethod.Post, "/execute", sandbox, $$"""{"code":"{{code}}"}""");
        using var response = await client.Http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode || !text.Contains(expected, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"runCode('{code}') answered {(int)response.StatusCode}: {text}");
        }
    }

    private static async Task<string> CreateContextAsync(DaemonClient client, CreatedSandbox sandbox, CancellationToken cancellationToken)
    {
        using var request = Request(HttpMethod.Post, "/contexts", sandbox, "{}");
        using var response = await client.Http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        using var doc = System.Text.Json.JsonDocument.Parse(text);
        return response.IsSuccessStatusCode ? doc.RootElement.GetProperty("id").GetString()! : throw new InvalidDataException($"POST /contexts answered {(int)response.StatusCode}: {text}");
    }
}
