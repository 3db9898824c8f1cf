using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Paddock.Security.Tests;
using Paddock.Soak;

namespace Paddock.Bench.Daemon;

/// <summary>
/// <c>paddock-bench soak [options]</c>: the bounded soak of issue 5 against a real paddockd (no pool), then the host
/// leak count and the daemon's RSS after the warm-up and at the end. Exits 1 when an operation failed or something
/// was left on the host.
/// </summary>
internal static class SoakCommand
{
    public const string Usage = """
        usage: paddock-bench soak [options]
          --clients N         concurrent clients, each with at most one sandbox (default 50)
          --minutes M         how long the load runs (default 5)
          --seconds S         instead of --minutes, for a short run
          --warmup S          seconds of load before the RSS baseline (default 60, or a fifth of a shorter run)
          --binary PATH       paddockd (default: artifacts/paddockd/paddockd under the repository, from scripts/publish-daemon)
          --templates-dir DIR built templates (default /var/lib/paddock-test/templates)
          --json              also print the figures as one JSON line at the end
        Mix per client: create when it has no sandbox, else 45% run 'echo', 40% write+read a file, 15% kill.
        Needs root and runc (the runc tier); PADDOCK_AGENT_BINARY, when set, is the agent paddockd puts in sandboxes.
        """;

    public static async Task<int> RunAsync(ReadOnlyMemory<string> args)
    {
        int clients = 50;
        TimeSpan duration = TimeSpan.FromMinutes(5);
        TimeSpan? warmUp = null;
        var json = false;
        var bench = new DaemonBenchOptions { Binary = DaemonCommand.DefaultBinary(), PoolSize = 0 };
        try
        {
            var a = args.Span;
            for (var i = 0; i < a.Length; i++)
            {
                var option = a[i];
                string Value(ReadOnlySpan<string> s, ref int index) =>
                    index + 1 < s.Length ? s[++index] : throw new ArgumentException($"option {option} needs a value");
                switch (option)
                {
                    case "--clients": clients = DaemonCommand.Positive(option, Value(a, ref i)); break;
                    case "--minutes": duration = TimeSpan.FromMinutes(DaemonCommand.Positive(option, Value(a, ref i))); break;
                    case "--seconds": duration = TimeSpan.FromSeconds(DaemonCommand.Positive(option, Value(a, ref i))); break;
                    case "--warmup": warmUp = TimeSpan.FromSeconds(DaemonCommand.Positive(option, Value(a, ref i))); break;
                    case "--binary": bench = bench with { Binary = Path.GetFullPath(Value(a, ref i)) }; break;
                    case "--templates-dir": bench = bench with { TemplatesDir = Path.GetFullPath(Value(a, ref i)) }; break;
                    case "--json": json = true; break;
                    case "-h" or "--help": Console.Error.WriteLine(Usage); return 0;
                    default: throw new ArgumentException($"unknown option '{option}'");
                }
            }
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"paddock-bench: {ex.Message}\n{Usage}");
            return 2;
        }
        if (!File.Exists(bench.Binary))
        {
            Console.Error.WriteLine($"paddock-bench: no paddockd at {bench.Binary}; run 'dotnet build src/Paddock.Daemon -c Release' first");
            return 2;
        }
        // Room for every client's sandbox (the daemon's default is 100 at once).
        bench = bench with { Clients = clients };
        var warm = warmUp ?? TimeSpan.FromSeconds(Math.Min(60, duration.TotalSeconds / 5));

        using var cancel = new CancellationTokenSource();
        void Cancel(PosixSignalContext context)
        {
            context.Cancel = true;
            cancel.Cancel();
        }
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Cancel);
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Cancel);
        Console.Error.WriteLine($"paddock-bench soak: {clients} clients for {duration.TotalSeconds:0} s (warm-up {warm.TotalSeconds:0} s), {bench.Binary}, {Environment.ProcessorCount} CPUs, {RuntimeInformation.OSDescription}");

        SoakResult result;
        HostLeftovers left;
        try
        {
            await using var daemon = await PaddockdProcess.StartAsync(bench, TimeSpan.FromMinutes(20), Console.Error, cancel.Token);
            Console.Error.WriteLine($"paddockd pid {daemon.Pid} at {daemon.Url}, state {daemon.StateDir}, sandboxes under cgroup {daemon.CgroupParent}");
            result = await new SoakRun(daemon.Url, daemon.ApiKey, daemon.ResidentBytes, Console.Error)
                .RunAsync(new SoakOptions(clients, duration, warm), cancel.Token);
            // Counted while the daemon still runs: what its killed sandboxes left, not what its stop cleans.
            // A kill's teardown finishes in the background: give the last ones time to end.
            left = await HostLeftovers.SettledAsync(daemon.StateDir, daemon.CgroupParent, TimeSpan.FromSeconds(30));
            if (!daemon.IsRunning)
            {
                Console.Error.WriteLine("paddock-bench soak: paddockd exited during the run:\n" + daemon.RecentOutput());
                return 1;
            }
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            Console.Error.WriteLine("paddock-bench soak: interrupted; sandboxes killed and paddockd stopped");
            return 130;
        }

        var leaks = left.Mounts + left.NetnsFiles + left.SandboxDirectories + left.Cgroups + left.Processes + left.NetLinks;
        Console.Out.WriteLine();
        Console.Out.WriteLine(result.ToString());
        Console.Out.WriteLine($"left on the host: {left} ({leaks} in all)");
        Console.Out.WriteLine(FormattableString.Invariant($"RSS growth after warm-up: {result.RssGrowth:+0.0%;-0.0%} (aim: within 20%: {(Math.Abs(result.RssGrowth) <= 0.2 ? "met" : "NOT met")})"));
        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["clients"] = clients,
                ["seconds"] = Math.Round(result.Elapsed.TotalSeconds, 1),
                ["operations"] = result.Operations,
                ["failures"] = result.Failures,
                ["first_failures"] = result.FirstFailures,
                ["rss_warm_bytes"] = result.RssWarmBytes,
                ["rss_end_bytes"] = result.RssEndBytes,
                ["rss_growth"] = Math.Round(result.RssGrowth, 4),
                ["sandboxes_still_listed"] = result.SandboxesStillListed,
                ["leftovers"] = left,
            }));
        }
        return result.TotalFailures == 0 && leaks == 0 && result.SandboxesStillListed == 0 ? 0 : 1;
    }
}
