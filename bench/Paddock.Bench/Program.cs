using System.Globalization;
using System.Runtime.InteropServices;
using Paddock.Bench.Agent;

namespace Paddock.Bench;

/// <summary>
/// paddock-bench: end-to-end figures of Paddock's components against baselines measured in the same run.
/// Progress goes to stderr; the table (and with --json, one JSON line at the end) to stdout.
/// </summary>
internal static class Program
{
    private const string Usage = """
        usage: paddock-bench agent [options]   (paddock-bench daemon --help: the daemon's figures; paddock-bench soak --help: the soak)
          --binary PATH       the agent to measure (default: artifacts/agent/paddock-agent under the repository)
          --round-trips N     timed /bin/true round trips per side (default 1000)
          --stream-mib N      MiB streamed through stdout per run (default 512)
          --file-mib N        MiB per upload/download/cp (default 256)
          --runs N            timed runs per throughput figure, after one warmup (default 5)
          --only SECTIONS     run only these, comma-separated: start, roundtrip, stream, files
          --quick             small sizes for a smoke run (100 round trips, 64 MiB, 32 MiB, 2 runs, 5 starts)
          --through-daemon    also stream and move files through paddockd's proxy to the same agent in a runc sandbox
                              (needs root, runc and the base template; paddockd from scripts/publish-daemon)
          --daemon-binary P   the paddockd for --through-daemon (default: artifacts/paddockd/paddockd)
          --json              also print the figures as one JSON line at the end
        """;

    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            Console.Error.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        if (args[0] == "daemon")
        {
            return await Daemon.DaemonCommand.RunAsync(args.AsMemory(1));
        }
        if (args[0] == "egress")
        {
            return await Daemon.EgressCommand.RunAsync(args.AsMemory(1));
        }
        if (args[0] == "interp")
        {
            return await Interp.InterpBench.RunAsync(args.AsMemory(1));
        }
        if (args[0] == "fork")
        {
            return await Daemon.ForkBench.RunAsync(args.AsMemory(1));
        }
        if (args[0] == "pause")
        {
            return await Daemon.PauseBench.RunAsync(args.AsMemory(1));
        }
        if (args[0] == "cluster")
        {
            return await Cluster.ClusterCommand.RunAsync(args.AsMemory(1));
        }
        if (args[0] == "soak")
        {
            return await Daemon.SoakCommand.RunAsync(args.AsMemory(1));
        }
        if (args[0] != "agent")
        {
            Console.Error.WriteLine($"paddock-bench: unknown mode '{args[0]}'\n{Usage}");
            return 2;
        }

        AgentBenchOptions options;
        bool json;
        try
        {
            (options, json) = Parse(args.AsSpan(1));
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"paddock-bench: {ex.Message}\n{Usage}");
            return 2;
        }
        if (!File.Exists(options.Binary))
        {
            Console.Error.WriteLine($"paddock-bench: no agent binary at {options.Binary}; run scripts/publish-agent first");
            return 2;
        }
        if (options.ThroughDaemon && !File.Exists(options.DaemonBinary))
        {
            Console.Error.WriteLine($"paddock-bench: no paddockd at {options.DaemonBinary}; run scripts/publish-daemon first");
            return 2;
        }

        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cancel.Cancel();
        };
        Console.Error.WriteLine($"paddock-bench agent: {options.Binary}, {Environment.ProcessorCount} CPUs, {RuntimeInformation.OSDescription}");
        var report = await new AgentBench(options, Console.Error).RunAsync(cancel.Token);
        Console.Out.WriteLine();
        report.PrintTable(Console.Out);
        if (json)
        {
            report.PrintJson(Console.Out);
        }
        return 0;
    }

    private static (AgentBenchOptions Options, bool Json) Parse(ReadOnlySpan<string> args)
    {
        var options = new AgentBenchOptions { Binary = DefaultBinary(), DaemonBinary = Daemon.DaemonCommand.DefaultBinary() };
        var json = false;
        for (var i = 0; i < args.Length; i++)
        {
            var option = args[i];
            string Value(ReadOnlySpan<string> a, ref int index) =>
                index + 1 < a.Length ? a[++index] : throw new ArgumentException($"option {option} needs a value");
            options = option switch
            {
                "--binary" => options with { Binary = Path.GetFullPath(Value(args, ref i)) },
                "--round-trips" => options with { RoundTrips = Positive(option, Value(args, ref i)) },
                "--stream-mib" => options with { StreamMiB = Positive(option, Value(args, ref i)) },
                "--file-mib" => options with { FileMiB = Positive(option, Value(args, ref i)) },
                "--runs" => options with { Runs = Positive(option, Value(args, ref i)) },
                "--only" => options with { Only = Sections(Value(args, ref i)) },
                "--through-daemon" => options with { ThroughDaemon = true },
                "--daemon-binary" => options with { DaemonBinary = Path.GetFullPath(Value(args, ref i)) },
                "--quick" => options with { RoundTrips = 100, StreamMiB = 64, FileMiB = 32, Runs = 2, StartSamples = 5 },
                "--json" => options,
                _ => throw new ArgumentException($"unknown option '{option}'"),
            };
            json |= option == "--json";
        }
        return (options, json);
    }

    private static HashSet<string> Sections(string text)
    {
        var known = new[] { "start", "roundtrip", "stream", "files" };
        var sections = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet();
        var unknown = sections.Except(known).ToList();
        return unknown.Count == 0 && sections.Count > 0
            ? sections
            : throw new ArgumentException($"unknown section(s) '{string.Join(",", unknown)}': expected {string.Join(", ", known)}");
    }

    private static int Positive(string option, string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
            ? n
            : throw new ArgumentException($"invalid value '{text}' for {option}: expected a positive integer");

    /// <summary>artifacts/agent/paddock-agent in the repository that holds this build (found by walking up to Paddock.slnx).</summary>
    private static string DefaultBinary()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Paddock.slnx")))
            {
                return Path.Combine(dir.FullName, "artifacts", "agent", "paddock-agent");
            }
        }
        return Path.GetFullPath("artifacts/agent/paddock-agent");
    }
}
