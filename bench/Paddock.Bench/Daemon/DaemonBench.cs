using System.Collections.Concurrent;
using System.Diagnostics;
using Paddock.Bench.Reporting;

namespace Paddock.Bench.Daemon;

/// <summary>
/// The daemon's figures of issue 3 against a real paddockd on the runc tier: create-to-first-output against a bare
/// <c>runc run</c>, creations per second with concurrent clients, and host memory per idle sandbox.
/// </summary>
internal sealed class DaemonBench(DaemonBenchOptions options, TextWriter log)
{
    // A first run may build the base template (about 8 minutes here) before paddockd listens.
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromMinutes(20);

    public async Task<DaemonReport> RunAsync(CancellationToken cancellationToken)
    {
        var report = new DaemonReport();
        await using var daemon = await PaddockdProcess.StartAsync(options, ReadyTimeout, log, cancellationToken);
        log.WriteLine($"paddockd pid {daemon.Pid} at {daemon.Url}, sandboxes under cgroup {daemon.CgroupParent}");
        using var client = new DaemonClient(daemon.Url, daemon.ApiKey);
        using var baseline = new RuncBaseline(BaseRootfs());

        await CreateToOutputAsync(client, baseline, report, cancellationToken);
        await ConcurrentCreationsAsync(daemon, report, cancellationToken);
        await IdleMemoryAsync(daemon, client, report, cancellationToken);
        return report;
    }

    /// <summary>Create → echo hi through the proxy → "hi", sequentially, alternating with a bare runc run.</summary>
    private async Task CreateToOutputAsync(DaemonClient client, RuncBaseline baseline, DaemonReport report, CancellationToken cancellationToken)
    {
        log.WriteLine($"create-to-first-output: {options.Runs} runs (+1 warmup), alternating with runc run");
        var daemonSamples = new Samples("ms", Direction.LowerIsBetter);
        var runcSamples = new Samples("ms", Direction.LowerIsBetter);
        var section = Stopwatch.StartNew();
        for (var i = 0; i <= options.Runs && section.Elapsed < options.SectionLimit; i++)
        {
            var ms = await CycleAsync(client, cancellationToken);
            var runcMs = baseline.RunOnce();
            if (i > 0)
            {
                daemonSamples.Add(ms);
                runcSamples.Add(runcMs);
            }
        }
        report.AddComparison("create to first output", "create_to_first_output_ms", daemonSamples, "runc run echo", runcSamples);
    }

    /// <summary>One timed create and echo; the kill afterwards is not timed. Returns the milliseconds.</summary>
    private static async Task<double> CycleAsync(DaemonClient client, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var sandbox = await client.CreateAsync(cancellationToken);
        try
        {
            await client.EchoHiAsync(sandbox, cancellationToken);
            return clock.Elapsed.TotalMilliseconds;
        }
        finally
        {
            await client.KillAsync(sandbox.Id, CancellationToken.None);
        }
    }

    /// <summary><see cref="DaemonBenchOptions.Clients"/> clients each creating, running echo hi and killing, until the count is reached.</summary>
    private async Task ConcurrentCreationsAsync(PaddockdProcess daemon, DaemonReport report, CancellationToken cancellationToken)
    {
        log.WriteLine($"concurrent creations: {options.Creations} by {options.Clients} clients");
        var latencies = new ConcurrentBag<double>();
        var started = 0;
        var section = Stopwatch.StartNew();
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(options.SectionLimit);
        var clients = Enumerable.Range(0, options.Clients).Select(async _ =>
        {
            // One HTTP client per simulated SDK user, each with its own connections.
            using var client = new DaemonClient(daemon.Url, daemon.ApiKey);
            while (Interlocked.Increment(ref started) <= options.Creations && !limit.IsCancellationRequested)
            {
                latencies.Add(await CycleAsync(client, limit.Token));
            }
        }).ToList();
        await Task.WhenAll(clients);
        var seconds = section.Elapsed.TotalSeconds;
        var samples = new Samples("ms", Direction.LowerIsBetter);
        foreach (var l in latencies)
        {
            samples.Add(l);
        }
        report.AddFigure($"create to first output, {options.Clients} clients", "concurrent_create_to_first_output_ms", samples);
        report.AddFact($"creations per second, {options.Clients} clients (create + echo hi + kill, {latencies.Count} in {seconds:0.0} s)", "creations_per_second", "/s", latencies.Count / seconds);
    }

    /// <summary>K sandboxes that ran one command and then idle: their cgroups' memory, their PSS, the daemon's RSS growth.</summary>
    private async Task IdleMemoryAsync(PaddockdProcess daemon, DaemonClient client, DaemonReport report, CancellationToken cancellationToken)
    {
        log.WriteLine($"idle memory: {options.IdleSandboxes} sandboxes, {options.IdleWait.TotalSeconds:0} s idle");
        var rssBefore = daemon.ResidentBytes();
        var ids = new List<string>();
        try
        {
            for (var i = 0; i < options.IdleSandboxes; i++)
            {
                var sandbox = await client.CreateAsync(cancellationToken);
                ids.Add(sandbox.Id);
                // The agent answers before it is counted: an idle sandbox is one that has served a command.
                await client.EchoHiAsync(sandbox, cancellationToken);
            }
            await Task.Delay(options.IdleWait, cancellationToken);
            var memory = HostMemory.Sandboxes(daemon.CgroupParent);
            var rssAfter = daemon.ResidentBytes();
            if (memory.Count != ids.Count)
            {
                log.WriteLine($"  warning: {memory.Count} sandbox cgroups under {daemon.CgroupParent}, {ids.Count} sandboxes created");
            }
            const double MiB = 1024 * 1024;
            var n = Math.Max(memory.Count, 1);
            report.AddFact("idle sandbox memory, cgroup memory.usage_in_bytes (rss + page cache charged)", "idle_sandbox_cgroup_usage_mib", "MiB", memory.Sum(m => m.UsageBytes) / MiB / n);
            report.AddFact("idle sandbox memory, cgroup memory.stat total_rss", "idle_sandbox_cgroup_rss_mib", "MiB", memory.Sum(m => m.RssBytes) / MiB / n);
            report.AddFact("idle sandbox memory, PSS of its processes (smaps_rollup)", "idle_sandbox_pss_mib", "MiB", memory.Sum(m => m.PssBytes) / MiB / n);
            report.AddFact("processes per idle sandbox", "idle_sandbox_processes", "", (double)memory.Sum(m => m.Processes) / n);
            report.AddFact($"paddockd RSS growth per idle sandbox ({rssBefore / MiB:0} -> {rssAfter / MiB:0} MiB for {ids.Count})", "daemon_rss_growth_per_sandbox_mib", "MiB", (rssAfter - rssBefore) / MiB / Math.Max(ids.Count, 1));
        }
        finally
        {
            foreach (var id in ids)
            {
                await client.KillAsync(id, CancellationToken.None);
            }
        }
    }

    /// <summary>The root filesystem of the newest built base template in the templates directory.</summary>
    private string BaseRootfs()
    {
        var dir = Path.Combine(options.TemplatesDir, "base");
        var newest = Directory.EnumerateDirectories(dir)
            .Where(d => File.Exists(Path.Combine(d, "template.json")) && Directory.Exists(Path.Combine(d, "rootfs")))
            .MaxBy(d => File.GetLastWriteTimeUtc(Path.Combine(d, "template.json")));
        return newest is null
            ? throw new DirectoryNotFoundException($"no built base template under {dir}")
            : Path.Combine(newest, "rootfs");
    }
}
