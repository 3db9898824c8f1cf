using System.Globalization;
using System.Runtime.InteropServices;

namespace Paddock.Bench.Daemon;

/// <summary><c>paddock-bench daemon [options]</c>: parses the options, runs <see cref="DaemonBench"/>, prints the report.</summary>
internal static class DaemonCommand
{
    public const string Usage = """
        usage: paddock-bench daemon [options]
          --binary PATH       paddockd to measure (default: artifacts/paddockd/paddockd under the repository, from scripts/publish-daemon)
          --templates-dir DIR built templates, base built there if missing (default /var/lib/paddock-test/templates)
          --runs N            sequential create-to-first-output runs and runc runs, after one warmup (default 20)
          --clients N         concurrent clients for the creation rate (default 16)
          --creations N       sandboxes those clients create in all (default 64)
          --idle N            idle sandboxes for the memory figure, besides the pool's (default 100)
          --idle-limit SECS   stop creating idle sandboxes after this long (default 600)
          --pool N            paddockd's warm pool of base (default 16; 0: no pool)
          --pool-refill N     pool sandboxes paddockd starts at once (default 2)
          --round-trips N     commands.run('true') round trips and bare spawns (default 50)
          --fanout-sandboxes N, --fanout-commands N
                              commands at once across sandboxes (default 200 across 50)
          --freeze-after SECS paddockd's --freeze-after for idle sandboxes (default 12; 0: never freeze)
          --observe on|off    paddockd's /metrics and audit trail (off: --metrics off --audit-max-events 0; default on)
          --only LIST         run only these sections: cold, pooled, exec, rate, fanout, idle (comma-separated)
          --isolation TIER    the tier the sandboxes run on: runc (default) or gvisor; the cold baseline is that tier's raw run
          --runsc PATH        the runsc of gvisor's raw baseline (default /usr/local/lib/paddock/runsc)
          --json              also print the figures as one JSON line at the end
        Needs root and runc (and runsc for --isolation gvisor).
        """;

    public static async Task<int> RunAsync(ReadOnlyMemory<string> args)
    {
        DaemonBenchOptions options;
        bool json;
        try
        {
            (options, json) = Parse(args.Span);
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"paddock-bench: {ex.Message}\n{Usage}");
            return 2;
        }
        if (!File.Exists(options.Binary))
        {
            Console.Error.WriteLine($"paddock-bench: no paddockd at {options.Binary}; run 'dotnet build src/Paddock.Daemon -c Release' first");
            return 2;
        }

        // SIGINT and SIGTERM cancel the run instead of ending the process, so the sandboxes are still killed and
        // paddockd stopped (sandboxes outlive their daemon).
        using var cancel = new CancellationTokenSource();
        void Cancel(PosixSignalContext context)
        {
            context.Cancel = true;
            cancel.Cancel();
        }
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Cancel);
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Cancel);
        Console.Error.WriteLine($"paddock-bench daemon: {options.Binary}, {Environment.ProcessorCount} CPUs, {RuntimeInformation.OSDescription}");
        DaemonReport report;
        try
        {
            report = await new DaemonBench(options, Console.Error).RunAsync(cancel.Token);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            Console.Error.WriteLine("paddock-bench daemon: interrupted; sandboxes killed and paddockd stopped");
            return 130;
        }
        Console.Out.WriteLine();
        report.PrintTable(Console.Out);
        if (json)
        {
            report.PrintJson(Console.Out);
        }
        return 0;
    }

    private static (DaemonBenchOptions Options, bool Json) Parse(ReadOnlySpan<string> args)
    {
        var options = new DaemonBenchOptions { Binary = DefaultBinary() };
        var json = false;
        for (var i = 0; i < args.Length; i++)
        {
            var option = args[i];
            string Value(ReadOnlySpan<string> a, ref int index) =>
                index + 1 < a.Length ? a[++index] : throw new ArgumentException($"option {option} needs a value");
            options = option switch
            {
                "--binary" => options with { Binary = Path.GetFullPath(Value(args, ref i)) },
                "--templates-dir" => options with { TemplatesDir = Path.GetFullPath(Value(args, ref i)) },
                "--runs" => options with { Runs = Positive(option, Value(args, ref i)) },
                "--clients" => options with { Clients = Positive(option, Value(args, ref i)) },
                "--observe" => options with
                {
                    Observe = Value(args, ref i) switch
                    {
                        "on" => true,
                        "off" => false,
                        var v => throw new ArgumentException($"--observe: expected on or off, got '{v}'"),
                    },
                },
                "--creations" => options with { Creations = Positive(option, Value(args, ref i)) },
                "--idle" => options with { IdleSandboxes = Positive(option, Value(args, ref i)) },
                "--idle-limit" => options with { IdleLimit = TimeSpan.FromSeconds(Positive(option, Value(args, ref i))) },
                "--pool" => options with { PoolSize = NonNegative(option, Value(args, ref i)) },
                "--pool-refill" => options with { PoolRefill = Positive(option, Value(args, ref i)) },
                "--round-trips" => options with { RoundTrips = Positive(option, Value(args, ref i)) },
                "--fanout-sandboxes" => options with { FanoutSandboxes = Positive(option, Value(args, ref i)) },
                "--fanout-commands" => options with { FanoutCommands = Positive(option, Value(args, ref i)) },
                "--freeze-after" => options with { FreezeAfter = TimeSpan.FromSeconds(NonNegative(option, Value(args, ref i))) },
                "--only" => options with { Sections = SectionsOf(Value(args, ref i)) },
                "--isolation" => options with { Isolation = Tier(Value(args, ref i)) },
                "--runsc" => options with { RunscBinary = Path.GetFullPath(Value(args, ref i)) },
                "--json" => options,
                _ => throw new ArgumentException($"unknown option '{option}'"),
            };
            json |= option == "--json";
        }
        return (options, json);
    }

    private static string Tier(string text) => text is "runc" or "gvisor" ? text : throw new ArgumentException($"--isolation is runc or gvisor, not '{text}'");

    /// <summary><c>--only cold,pooled,exec,rate,fanout,idle</c> (any of them, comma-separated).</summary>
    private static DaemonSection SectionsOf(string text)
    {
        var sections = (DaemonSection)0;
        foreach (var name in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            sections |= Enum.TryParse<DaemonSection>(name, ignoreCase: true, out var section) && section != DaemonSection.All && Enum.IsDefined(section)
                ? section
                : throw new ArgumentException($"unknown section '{name}' for --only: expected cold, pooled, exec, rate, fanout or idle");
        }
        return sections == 0 ? throw new ArgumentException("--only needs at least one section") : sections;
    }

    private static int NonNegative(string option, string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            ? n
            : throw new ArgumentException($"invalid value '{text}' for {option}: expected a non-negative integer");

    internal static int Positive(string option, string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
            ? n
            : throw new ArgumentException($"invalid value '{text}' for {option}: expected a positive integer");

    /// <summary>
    /// The published paddockd (scripts/publish-daemon: precompiled, as scripts/run starts it) in the repository that
    /// holds this build (found by walking up to Paddock.slnx).
    /// </summary>
    internal static string DefaultBinary()
    {
        const string relative = "artifacts/paddockd/paddockd";
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Paddock.slnx")))
            {
                return Path.Combine(dir.FullName, relative);
            }
        }
        return Path.GetFullPath(relative);
    }
}
