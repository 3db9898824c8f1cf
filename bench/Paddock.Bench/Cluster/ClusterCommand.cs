using System.Globalization;
using System.Runtime.InteropServices;
using Paddock.Bench.Daemon;

namespace Paddock.Bench.Cluster;

/// <summary><c>paddock-bench cluster [options]</c>: parses, handles SIGINT/SIGTERM (everything is torn down), prints the table.</summary>
internal static class ClusterCommand
{
    public const string Usage = """
        usage: paddock-bench cluster [options]
          --runs N            create-to-first-output runs of each kind (default 10)
          --round-trips N     echo round trips per path (default 30)
          --clients N         concurrent clients of the creation rate (default 4)
          --creations N       create + echo + kill cycles of the rate, per side (default 12)
          --max-sandboxes N   each node's limit, the single node's too (default 8)
          --pool N            each node's warm pool of base (default 0: none)
          --kills N           SIGKILL trials of the loss figure (default 3)
          --probe-timeout S   the nodes' --cluster-probe-timeout in seconds (default 1, as the cluster tests)
          --binary PATH       paddockd (default: artifacts/paddockd/paddockd, from scripts/publish-daemon)
          --templates-dir DIR built templates (default /var/lib/paddock-test/templates; base must be built)
          --json              also print the figures as one JSON line at the end
        Starts its own PostgreSQL (Unix socket), one paddockd alone and then three in cluster mode, each in a network
        namespace of its own (10.217.0.0/16, names pdkb-*), and removes all of it at the end. Needs root and runc.
        """;

    public static async Task<int> RunAsync(ReadOnlyMemory<string> args)
    {
        var options = new ClusterBenchOptions { Binary = DaemonCommand.DefaultBinary() };
        var json = false;
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
                    case "--runs": options = options with { Runs = DaemonCommand.Positive(option, Value(a, ref i)) }; break;
                    case "--round-trips": options = options with { RoundTrips = DaemonCommand.Positive(option, Value(a, ref i)) }; break;
                    case "--clients": options = options with { Clients = DaemonCommand.Positive(option, Value(a, ref i)) }; break;
                    case "--creations": options = options with { Creations = DaemonCommand.Positive(option, Value(a, ref i)) }; break;
                    case "--max-sandboxes": options = options with { MaxSandboxes = DaemonCommand.Positive(option, Value(a, ref i)) }; break;
                    case "--pool": options = options with { PoolSize = NonNegative(option, Value(a, ref i)) }; break;
                    case "--kills": options = options with { Kills = NonNegative(option, Value(a, ref i)) }; break;
                    case "--probe-timeout": options = options with { ProbeTimeout = TimeSpan.FromSeconds(DaemonCommand.Positive(option, Value(a, ref i))) }; break;
                    case "--binary": options = options with { Binary = Path.GetFullPath(Value(a, ref i)) }; break;
                    case "--templates-dir": options = options with { TemplatesDir = Path.GetFullPath(Value(a, ref i)) }; break;
                    case "--json": json = true; break;
                    case "-h" or "--help": Console.Error.WriteLine(Usage); return 0;
                    default: throw new ArgumentException($"unknown option '{option}'");
                }
            }
            if (options.MaxSandboxes < options.Clients + 2)
            {
                throw new ArgumentException($"--max-sandboxes {options.MaxSandboxes} leaves no room: the single node must hold --clients ({options.Clients}) sandboxes and 2 more");
            }
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"paddock-bench: {ex.Message}\n{Usage}");
            return 2;
        }
        if (!File.Exists(options.Binary))
        {
            Console.Error.WriteLine($"paddock-bench: no paddockd at {options.Binary}; run scripts/publish-daemon first (bench/run cluster does)");
            return 2;
        }
        if (!Directory.Exists(Path.Combine(options.TemplatesDir, "base")))
        {
            Console.Error.WriteLine($"paddock-bench: no base template under {options.TemplatesDir}; run the daemon bench or the tests once (they build it)");
            return 2;
        }
        if (Environment.UserName != "root")
        {
            Console.Error.WriteLine("paddock-bench cluster: needs root (network namespaces, runc)");
            return 2;
        }

        using var cancel = new CancellationTokenSource();
        void Cancel(PosixSignalContext context)
        {
            context.Cancel = true;
            cancel.Cancel();
        }
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Cancel);
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Cancel);
        Console.Error.WriteLine($"paddock-bench cluster: {options.Binary}, {Environment.ProcessorCount} CPUs, {RuntimeInformation.OSDescription}, " +
            $"load average at the start {File.ReadAllText("/proc/loadavg").Trim()}");
        try
        {
            var report = await new ClusterBench(options, Console.Error).RunAsync(cancel.Token);
            Console.Out.WriteLine();
            report.PrintTable(Console.Out);
            if (json)
            {
                report.PrintJson(Console.Out);
            }
            return 0;
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            Console.Error.WriteLine("paddock-bench cluster: interrupted; nodes, namespaces and PostgreSQL removed");
            return 130;
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or InvalidOperationException or InvalidDataException or TimeoutException
            or TaskCanceledException)
        {
            // Everything was torn down on the way out (each piece is an `await using` or a finally).
            Console.Error.WriteLine($"paddock-bench cluster: failed: {ex}");
            return 1;
        }
    }

    private static int NonNegative(string option, string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            ? n
            : throw new ArgumentException($"invalid value '{text}' for {option}: expected a non-negative integer");
}
