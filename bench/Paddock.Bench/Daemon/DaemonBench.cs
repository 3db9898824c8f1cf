using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Paddock.Bench.Native;
using Paddock.Bench.Reporting;

namespace Paddock.Bench.Daemon;

/// <summary>
/// The daemon's figures of issues 3 and 6 against a real paddockd on the runc tier with a warm pool of base:
/// create-to-first-output pooled and cold against a bare <c>runc run</c>, creations per second with concurrent
/// clients, a command's round trip through the proxy against a bare spawn, many commands at once across many
/// sandboxes, and host memory per idle sandbox with the daemon's create latency while they idle.
/// </summary>
internal sealed class DaemonBench(DaemonBenchOptions options, TextWriter log)
{
    // A first run may build the base template (about 8 minutes here) before paddockd listens.
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromMinutes(20);

    private bool _poolStuck;

    public async Task<DaemonReport> RunAsync(CancellationToken cancellationToken)
    {
        var report = new DaemonReport();
        await using var daemon = await PaddockdProcess.StartAsync(options, ReadyTimeout, log, cancellationToken);
        log.WriteLine($"paddockd pid {daemon.Pid} at {daemon.Url}, sandboxes under cgroup {daemon.CgroupParent}, pool base={options.PoolSize}");
        using var client = new DaemonClient(daemon.Url, daemon.ApiKey);
        // The tier's own raw runtime is the baseline: runc for runc, runsc (no network, the tier's platform) for gVisor.
        using var baseline = options.Isolation == "gvisor"
            ? new RawRunBaseline("runsc", options.RunscBinary, ["--network=none", "--platform=systrap"], BaseRootfs())
            : new RawRunBaseline("runc", "/usr/sbin/runc", [], BaseRootfs());
        // crun as a second floor on the runc tier where it is installed (issue 19: the tier may drive crun). On a hybrid
        // host it only runs once hugetlb has left cgroup2 (a daemon with Runc:Runtime=crun does that at its start).
        using var crun = options.Isolation == "runc" && File.Exists("/usr/bin/crun")
            ? new RawRunBaseline("crun", "/usr/bin/crun", [], BaseRootfs())
            : null;

        if (options.Includes(DaemonSection.Cold))
        {
            await ColdCreateToOutputAsync(daemon, client, baseline, crun, report, cancellationToken);
        }
        if (options.Includes(DaemonSection.Pooled))
        {
            await PooledCreateToOutputAsync(daemon, client, report, cancellationToken);
        }
        if (options.Includes(DaemonSection.Exec))
        {
            await ExecRoundTripAsync(daemon, client, report, cancellationToken);
        }
        else
        {
            // bare_spawn_p50_ms is always reported; without the exec section it is measured alone, once the pool is full.
            await WaitForPoolAsync(daemon, client, cancellationToken);
            var bare = new Samples("ms", Direction.LowerIsBetter);
            for (var i = 0; i <= options.RoundTrips; i++)
            {
                var ms = BareSpawnOnce();
                if (i > 0)
                {
                    bare.Add(ms);
                }
            }
            ReportBareSpawn(report, bare);
        }
        if (options.Includes(DaemonSection.Rate))
        {
            await ConcurrentCreationsAsync(daemon, client, report, cancellationToken);
        }
        if (options.Includes(DaemonSection.Fanout))
        {
            await FanoutAsync(daemon, client, report, cancellationToken);
        }
        if (options.Includes(DaemonSection.Idle))
        {
            await IdleMemoryAsync(daemon, client, report, cancellationToken);
        }
        return report;
    }

    /// <summary>One posix_spawn + waitpid of /bin/true, in milliseconds: the floor under running a command.</summary>
    private static double BareSpawnOnce()
    {
        using var spawner = new Spawner("/bin/true", [], quiet: true);
        var clock = Stopwatch.StartNew();
        var code = Spawner.Wait(spawner.Spawn());
        var ms = clock.Elapsed.TotalMilliseconds;
        return code == 0 ? ms : throw new InvalidOperationException($"/bin/true exited with {code}");
    }

    private static void ReportBareSpawn(DaemonReport report, Samples samples)
    {
        report.AddFigure("bare posix_spawn of /bin/true", "bare_spawn_ms", samples);
        report.AddFact("bare spawn p50", "bare_spawn_p50_ms", "ms", samples.P50);
    }

    /// <summary>Cold create (limits no pool sandbox has) → echo hi through the proxy → "hi", alternating with a bare runc run.</summary>
    private async Task ColdCreateToOutputAsync(PaddockdProcess daemon, DaemonClient client, RawRunBaseline baseline, RawRunBaseline? crun, DaemonReport report, CancellationToken cancellationToken)
    {
        var crunSamples = new Samples("ms", Direction.LowerIsBetter);
        log.WriteLine($"cold create-to-first-output on {options.Isolation}: {options.Runs} runs (+1 warmup), alternating with {baseline.Name} run");
        var daemonSamples = new Samples("ms", Direction.LowerIsBetter);
        var runcSamples = new Samples("ms", Direction.LowerIsBetter);
        // No pool refill during the section (a cold create takes nothing from the pool), so the daemon's and the
        // sandboxes' CPU time across it is what the cold cycles cost.
        await WaitForPoolAsync(daemon, client, cancellationToken);
        var cpuBefore = daemon.CpuMilliseconds();
        var section = Stopwatch.StartNew();
        var unquiet = 0;
        // The baseline's CPU: the bench's reaped children across each raw run (runtime, its init, the echo).
        var rawCpu = new Samples("ms", Direction.LowerIsBetter);
        // paddockd's own CPU while it serves nothing of ours (from each raw run's start to the next cycle's): its
        // timers, metrics and sweeps, which the section's total also holds, however long the quiet waits take.
        var restCpuMs = 0.0;
        var restSeconds = 0.0;
        (double DaemonMs, double SelfMs, double SandboxesMs)? restStart = null;
        var restClock = new Stopwatch();
        var warmupCpu = cpuBefore;
        var sinceWarmup = new Stopwatch();
        var coldSplit = new ColdSplit();
        for (var i = 0; i <= options.Runs && section.Elapsed < options.SectionLimit; i++)
        {
            // Each side from a quiet host (untimed, bounded, as in the pooled figure): a kill answers before its
            // teardown (runc delete, unmounts) and a create's disk-stock refill runs after it, both in the
            // background, and without the wait they land on whichever run comes next, the raw runc's included.
            unquiet += await HostCpu.WaitUntilQuietAsync(TimeSpan.FromSeconds(10), cancellationToken) ? 0 : 1;
            if (restStart is { } rest)
            {
                restCpuMs += daemon.CpuMilliseconds().SelfMs - rest.SelfMs;
                restSeconds += restClock.Elapsed.TotalSeconds;
            }
            var (ms, _, split) = await CycleAsync(client, cold: true, cancellationToken);
            if (i > 0)
            {
                coldSplit.Add(ms, split.CreateMs, split.Sandbox);
            }
            unquiet += await HostCpu.WaitUntilQuietAsync(TimeSpan.FromSeconds(10), cancellationToken) ? 0 : 1;
            restStart = daemon.CpuMilliseconds();
            restClock.Restart();
            if (i == 0)
            {
                // The figure starts after the warmup cycle: the daemon's first create compiles the code of its path
                // (precompiled code does not cover every generic instantiation) and fills its caches once.
                warmupCpu = restStart.Value;
                sinceWarmup.Restart();
            }
            var rawBefore = CpuTime.ReapedChildren();
            var runcMs = baseline.RunOnce();
            var rawCpuMs = (CpuTime.ReapedChildren() - rawBefore).TotalMilliseconds;
            if (i > 0)
            {
                daemonSamples.Add(ms);
                runcSamples.Add(runcMs);
                rawCpu.Add(rawCpuMs);
            }
            if (crun is not null)
            {
                try
                {
                    var crunMs = crun.RunOnce();
                    if (i > 0)
                    {
                        crunSamples.Add(crunMs);
                    }
                }
                catch (Exception ex) when (ex is IOException or InvalidOperationException)
                {
                    log.WriteLine($"raw crun run failed ({ex.Message}); no crun baseline (a hybrid host whose cgroup2 holds hugetlb?)");
                    crun = null;
                }
            }
        }
        report.AddFact($"cold and raw runs started before the host was quiet (waited up to 10 s)", "cold_unquiet_starts", "", unquiet);
        // Background teardowns of the last kills included: the section ends when their cgroups are gone.
        await WaitForPoolAsync(daemon, client, cancellationToken);
        var cpuAfter = daemon.CpuMilliseconds();
        report.AddFact("CPU of the warmup cycle, the daemon's first create (paddockd, its children and the sandbox cgroup)", "cold_warmup_cycle_cpu_ms", "ms",
            warmupCpu.DaemonMs - cpuBefore.DaemonMs + warmupCpu.SandboxesMs - cpuBefore.SandboxesMs);
        cpuBefore = warmupCpu;
        var cycles = daemonSamples.Count;
        var cpuPerCycle = (cpuAfter.DaemonMs - cpuBefore.DaemonMs + cpuAfter.SandboxesMs - cpuBefore.SandboxesMs) / cycles;
        report.AddFact($"CPU per cold create + echo + kill (paddockd {(cpuAfter.SelfMs - cpuBefore.SelfMs) / cycles:0} ms, " +
            $"its children {(cpuAfter.DaemonMs - cpuAfter.SelfMs - cpuBefore.DaemonMs + cpuBefore.SelfMs) / cycles:0} ms, " +
            $"sandbox cgroup {(cpuAfter.SandboxesMs - cpuBefore.SandboxesMs) / cycles:0} ms; {cycles} cycles)", "cold_cycle_cpu_ms", "ms", cpuPerCycle);
        var sectionSeconds = sinceWarmup.Elapsed.TotalSeconds;
        var restRate = restSeconds > 0 ? restCpuMs / restSeconds : 0;
        report.AddFact($"paddockd's CPU at rest between cycles ({restCpuMs:0} ms over {restSeconds:0.0} s; over the {sectionSeconds:0.0} s after the warmup " +
            $"that is {restRate * sectionSeconds / cycles:0.0} ms of each cycle's paddockd figure)", "daemon_rest_cpu_ms_per_s", "ms/s", restRate);
        report.AddFact($"CPU per raw {baseline.Name} run of echo (its process tree, getrusage of the bench's children; p50 of {rawCpu.Count})",
            $"raw_{baseline.Name}_cpu_ms", "ms", rawCpu.P50);
        report.AddFact($"cold cycle CPU / raw {baseline.Name} run CPU", $"cold_cycle_cpu_to_raw_{baseline.Name}_ratio", "x", cpuPerCycle / rawCpu.P50);
        report.AddFact($"cold creations per second the CPUs bound ({Environment.ProcessorCount} CPUs / CPU per cycle)", "cold_cpu_bound_per_s", "/s",
            Environment.ProcessorCount * 1000.0 / cpuPerCycle);
        report.AddComparison("create to first output, cold", "create_to_first_output_ms", daemonSamples, $"{baseline.Name} run echo", runcSamples);
        report.AddFact("cold create to first output p50", "cold_create_to_output_p50_ms", "ms", daemonSamples.P50);
        report.AddFact($"raw {baseline.Name} run p50", $"raw_{baseline.Name}_p50_ms", "ms", runcSamples.P50);
        report.AddFact($"cold / raw {baseline.Name} (p50)", $"cold_to_raw_{baseline.Name}_ratio", "x", daemonSamples.P50 / runcSamples.P50);
        if (crunSamples.Count > 0)
        {
            report.AddFact("raw crun run p50", "raw_crun_p50_ms", "ms", crunSamples.P50);
            report.AddFact("cold / raw crun (p50)", "cold_to_raw_crun_ratio", "x", daemonSamples.P50 / crunSamples.P50);
        }
        coldSplit.Report(report);
    }

    /// <summary>
    /// Where a cold create's wall time goes: the client's POST, the server's steps from its Server-Timing (template,
    /// store, disk, rootfs, OCI config, the runtime's run, the network, the agent's readiness, ...), and the first
    /// command until its output. What the cold/raw ratio is made of.
    /// </summary>
    private sealed class ColdSplit
    {
        private readonly Samples _creates = new("ms", Direction.LowerIsBetter);
        private readonly Samples _firstCommands = new("ms", Direction.LowerIsBetter);
        // In the order the server reports them; a step named twice in one create (the journal) is summed.
        private readonly List<(string Step, Samples Samples)> _steps = [];

        public void Add(double totalMs, double createMs, CreatedSandbox sandbox)
        {
            _creates.Add(createMs);
            _firstCommands.Add(totalMs - createMs);
            foreach (var step in sandbox.StepNames())
            {
                var index = _steps.FindIndex(s => s.Step == step);
                if (index < 0)
                {
                    _steps.Add((step, new Samples("ms", Direction.LowerIsBetter)));
                    index = _steps.Count - 1;
                }
                _steps[index].Samples.Add(sandbox.StepMilliseconds(step)!.Value);
            }
        }

        public void Report(DaemonReport report)
        {
            if (_creates.Count == 0)
            {
                return;
            }
            report.AddFigure("  of it: POST /sandboxes (cold)", "cold_create_ms", _creates);
            foreach (var (step, samples) in _steps)
            {
                report.AddFigure($"    of that, Server-Timing {step}", $"cold_step_{step.Replace('-', '_')}_ms", samples);
            }
            report.AddFigure("  of it: the first command (echo hi until hi)", "cold_first_command_ms", _firstCommands);
        }
    }

    /// <summary>Pooled create → echo hi → "hi", each run after the pool has refilled (a claim, not a fallback, is measured).</summary>
    private async Task PooledCreateToOutputAsync(PaddockdProcess daemon, DaemonClient client, DaemonReport report, CancellationToken cancellationToken)
    {
        log.WriteLine($"pooled create-to-first-output: {options.Runs} runs (+1 warmup), each after the pool refilled");
        var samples = new Samples("ms", Direction.LowerIsBetter);
        var creates = new Samples("ms", Direction.LowerIsBetter);
        var firstCommands = new Samples("ms", Direction.LowerIsBetter);
        var kills = new Samples("ms", Direction.LowerIsBetter);
        var seconds = new Samples("ms", Direction.LowerIsBetter);
        var serverTotals = new Samples("ms", Direction.LowerIsBetter);
        var inits = new Samples("ms", Direction.LowerIsBetter);
        var fallbacks = 0;
        var section = Stopwatch.StartNew();
        var unquiet = 0;
        for (var i = 0; i <= options.Runs && section.Elapsed < options.SectionLimit; i++)
        {
            await WaitForPoolAsync(daemon, client, cancellationToken);
            // A member counts in the cgroup count from its runc run on, before its agent is up and warmed, and the
            // previous run's teardown and disk-stock refill run in the background: wait (untimed, bounded) until the
            // host is quiet, so each run measures a claim, not whatever the last one left running.
            unquiet += await HostCpu.WaitUntilQuietAsync(TimeSpan.FromSeconds(10), cancellationToken) ? 0 : 1;
            var (ms, pooled, split) = await CycleAsync(client, cold: false, cancellationToken, secondCommand: true);
            if (i > 0)
            {
                samples.Add(ms);
                creates.Add(split.CreateMs);
                firstCommands.Add(ms - split.CreateMs);
                kills.Add(split.KillMs);
                seconds.Add(split.SecondMs);
                if (!double.IsNaN(split.ServerMs))
                {
                    serverTotals.Add(split.ServerMs);
                }
                if (!double.IsNaN(split.InitMs))
                {
                    inits.Add(split.InitMs);
                }
                fallbacks += pooled ? 0 : 1;
            }
        }
        report.AddFigure($"create to first output, pooled ({fallbacks} of {samples.Count} fell back cold)", "pooled_create_to_first_output_ms", samples);
        report.AddFigure("  of it: POST /sandboxes (pooled)", "pooled_create_ms", creates);
        if (serverTotals.Count > 0 && inits.Count > 0)
        {
            report.AddFigure("    of that: the server side (Server-Timing total)", "pooled_create_server_ms", serverTotals);
            report.AddFigure("    of that: the hand-over (Server-Timing pool-init)", "pooled_create_pool_init_ms", inits);
        }
        report.AddFigure("  of it: the first command (echo hi until hi)", "pooled_first_command_ms", firstCommands);
        report.AddFigure("  then: a second echo hi (not in the figure)", "pooled_second_command_ms", seconds);
        report.AddFigure("  then: DELETE /sandboxes/{id} (not in the figure)", "kill_ms", kills);
        report.AddFact("kill p50", "kill_p50_ms", "ms", kills.P50);
        report.AddFact("pooled create to first output p50", "pooled_create_to_output_p50_ms", "ms", samples.P50);
        report.AddFact("pooled create to first output p99", "pooled_create_to_output_p99_ms", "ms", samples.P99);
        report.AddFact("pooled creates that fell back cold", "pooled_fallbacks", "", fallbacks);
        report.AddFact($"pooled runs started before the host was quiet ({HostCpu.QuietBusyShare:P0} busy or less over {HostCpu.QuietWindow.TotalMilliseconds:0} ms; waited up to 10 s)", "pooled_unquiet_starts", "", unquiet);
    }

    /// <summary>
    /// commands.run('true') on one running sandbox through the proxy, alternating with a bare spawn of /bin/true, both
    /// once the pool has refilled after the create: measured right after paddockd started, while the pool filled (runc
    /// and agent starts on both cores), the bare spawn came out at 7.12 ms p50 on an otherwise idle machine.
    /// </summary>
    private async Task ExecRoundTripAsync(PaddockdProcess daemon, DaemonClient client, DaemonReport report, CancellationToken cancellationToken)
    {
        log.WriteLine($"exec round trip: {options.RoundTrips} x true through the proxy, each followed by a bare spawn of /bin/true");
        var sandbox = await client.CreateAsync(cancellationToken);
        try
        {
            await WaitForPoolAsync(daemon, client, cancellationToken);
            var samples = new Samples("ms", Direction.LowerIsBetter);
            var bare = new Samples("ms", Direction.LowerIsBetter);
            for (var i = 0; i <= options.RoundTrips; i++)
            {
                var clock = Stopwatch.StartNew();
                await client.RunTrueAsync(sandbox, cancellationToken);
                var ms = clock.Elapsed.TotalMilliseconds;
                var bareMs = BareSpawnOnce();
                if (i > 0)
                {
                    samples.Add(ms);
                    bare.Add(bareMs);
                }
            }
            ReportBareSpawn(report, bare);
            report.AddComparison("commands.run('true') through the proxy", "exec_roundtrip_ms", samples, "posix_spawn true", bare);
            report.AddFact("exec round trip p50", "exec_roundtrip_p50_ms", "ms", samples.P50);
        }
        finally
        {
            await client.KillAsync(sandbox.Id, CancellationToken.None);
        }
    }

    /// <summary><see cref="DaemonBenchOptions.Clients"/> clients each creating, running echo hi and killing, until the count is reached.</summary>
    private async Task ConcurrentCreationsAsync(PaddockdProcess daemon, DaemonClient client, DaemonReport report, CancellationToken cancellationToken)
    {
        await WaitForPoolAsync(daemon, client, cancellationToken);
        log.WriteLine($"concurrent creations: {options.Creations} by {options.Clients} clients, starting with a full pool of {options.PoolSize}");
        var latencies = new ConcurrentBag<double>();
        var pooledCount = 0;
        var refused = 0;
        var started = 0;
        var section = Stopwatch.StartNew();
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(options.SectionLimit);
        // paddockd answers 429 at --max-sandboxes: a killed sandbox keeps its slot until its teardown ends. A client
        // backs off and tries the same creation again, as an SDK user would; the refusals are reported, and the
        // section's time limit bounds the retries.
        async Task<(double Ms, bool Pooled)> CycleRetryingRefusalsAsync(DaemonClient one)
        {
            while (true)
            {
                try
                {
                    var (ms, pooled, _) = await CycleAsync(one, cold: false, limit.Token);
                    return (ms, pooled);
                }
                catch (HttpRequestException ex) when (ex.StatusCode == HttpStatusCode.TooManyRequests)
                {
                    Interlocked.Increment(ref refused);
                    await Task.Delay(RefusedBackoff, limit.Token);
                }
            }
        }
        var clients = Enumerable.Range(0, options.Clients).Select(async _ =>
        {
            // One HTTP client per simulated SDK user, each with its own connections.
            using var one = new DaemonClient(daemon.Url, daemon.ApiKey);
            while (Interlocked.Increment(ref started) <= options.Creations && !limit.IsCancellationRequested)
            {
                var (ms, pooled) = await CycleRetryingRefusalsAsync(one);
                latencies.Add(ms);
                if (pooled)
                {
                    Interlocked.Increment(ref pooledCount);
                }
            }
        }).ToList();
        await Task.WhenAll(clients);
        var seconds = section.Elapsed.TotalSeconds;
        var samples = new Samples("ms", Direction.LowerIsBetter);
        foreach (var l in latencies)
        {
            samples.Add(l);
        }
        report.AddFigure($"create to first output, {options.Clients} clients ({pooledCount} of {latencies.Count} pooled)", "concurrent_create_to_first_output_ms", samples);
        report.AddFact($"creations per second, {options.Clients} clients (create + echo hi + kill, {latencies.Count} in {seconds:0.0} s, {pooledCount} pooled)", "creations_per_s", "/s", latencies.Count / seconds);
        report.AddFact($"creates refused with 429 and retried after {RefusedBackoff.TotalMilliseconds:0} ms (paddockd at --max-sandboxes while teardowns lag)", "creations_refused_429", "", refused);
    }

    /// <summary>How long a rate client waits after a 429 before it creates again.</summary>
    private static readonly TimeSpan RefusedBackoff = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// <see cref="DaemonBenchOptions.FanoutCommands"/> commands.run('true') at once across
    /// <see cref="DaemonBenchOptions.FanoutSandboxes"/> running sandboxes: latency of each, and failures.
    /// </summary>
    private async Task FanoutAsync(PaddockdProcess daemon, DaemonClient client, DaemonReport report, CancellationToken cancellationToken)
    {
        log.WriteLine($"fan-out: {options.FanoutCommands} commands at once across {options.FanoutSandboxes} sandboxes");
        var sandboxes = new List<CreatedSandbox>();
        try
        {
            for (var i = 0; i < options.FanoutSandboxes; i++)
            {
                sandboxes.Add(await client.CreateAsync(cancellationToken));
            }
            var latencies = new ConcurrentBag<double>();
            var failures = 0;
            string? firstFailure = null;
            // A few clients' worth of connections, as several SDK users would have.
            var clients = Enumerable.Range(0, 8).Select(_ => new DaemonClient(daemon.Url, daemon.ApiKey)).ToList();
            try
            {
                using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                limit.CancelAfter(options.SectionLimit);
                await Task.WhenAll(Enumerable.Range(0, options.FanoutCommands).Select(async i =>
                {
                    var clock = Stopwatch.StartNew();
                    try
                    {
                        await clients[i % clients.Count].RunTrueAsync(sandboxes[i % sandboxes.Count], limit.Token);
                        latencies.Add(clock.Elapsed.TotalMilliseconds);
                    }
                    catch (Exception ex) when (ex is IOException or HttpRequestException or OperationCanceledException)
                    {
                        Interlocked.Increment(ref failures);
                        Interlocked.CompareExchange(ref firstFailure, ex.Message, null);
                    }
                }));
            }
            finally
            {
                clients.ForEach(c => c.Dispose());
            }
            var samples = new Samples("ms", Direction.LowerIsBetter);
            foreach (var l in latencies)
            {
                samples.Add(l);
            }
            report.AddFigure($"{options.FanoutCommands} concurrent commands.run('true') across {options.FanoutSandboxes} sandboxes", "fanout_command_ms", samples);
            report.AddFact("fan-out commands p50", "fanout_p50_ms", "ms", samples.Count > 0 ? samples.P50 : double.NaN);
            report.AddFact("fan-out commands p99", "fanout_p99_ms", "ms", samples.Count > 0 ? samples.P99 : double.NaN);
            report.AddFact($"fan-out commands failed{(firstFailure is null ? "" : $" (first: {firstFailure})")}", "fanout_failures", "", failures);
        }
        finally
        {
            foreach (var s in sandboxes)
            {
                await client.KillAsync(s.Id, CancellationToken.None);
            }
        }
    }

    /// <summary>
    /// K sandboxes that ran one command and then idle, besides the pool's (which idle too, and are counted): their
    /// cgroups' memory, their PSS, the daemon's RSS growth, and a pooled create + run while they all idle.
    /// </summary>
    private async Task IdleMemoryAsync(PaddockdProcess daemon, DaemonClient client, DaemonReport report, CancellationToken cancellationToken)
    {
        log.WriteLine($"idle memory: {options.IdleSandboxes} sandboxes (+ the pool's {options.PoolSize}), {options.IdleWait.TotalSeconds:0} s idle");
        var rssBefore = daemon.ResidentBytes();
        var ids = new ConcurrentBag<string>();
        var created = new ConcurrentBag<CreatedSandbox>();
        try
        {
            var section = Stopwatch.StartNew();
            var next = 0;
            var idleFailures = 0;
            string? idleFailure = null;
            // A few creators at once: the daemon starts sandboxes in parallel, and a thousand one by one takes long.
            await Task.WhenAll(Enumerable.Range(0, 4).Select(async _ =>
            {
                while (Interlocked.Increment(ref next) <= options.IdleSandboxes && section.Elapsed < options.IdleLimit)
                {
                    try
                    {
                        var sandbox = await client.CreateAsync(cancellationToken);
                        ids.Add(sandbox.Id);
                        created.Add(sandbox);
                        // The agent answers before it is counted: an idle sandbox is one that has served a command.
                        await client.EchoHiAsync(sandbox, cancellationToken);
                    }
                    catch (Exception ex) when (ex is HttpRequestException or IOException)
                    {
                        // What stops the count (capacity, memory, a start timeout) is the finding: report it, measure what runs.
                        Interlocked.Increment(ref idleFailures);
                        Interlocked.CompareExchange(ref idleFailure, ex.Message, null);
                        return;
                    }
                }
            }));
            if (idleFailure is not null)
            {
                log.WriteLine($"  {idleFailures} creators stopped on a failure; first: {idleFailure}");
            }
            log.WriteLine($"  {ids.Count} sandboxes created in {section.Elapsed.TotalSeconds:0} s");
            if (ids.Count < options.IdleSandboxes)
            {
                log.WriteLine($"  warning: only {ids.Count} of {options.IdleSandboxes} sandboxes started within {options.IdleLimit.TotalSeconds:0} s");
            }
            await WaitForPoolAsync(daemon, client, cancellationToken);
            // With the idle freezer on, long enough for the last one created to be frozen: its idle time plus a
            // sweep period (half of it, at most 5 s) and a margin.
            var idleWait = options.FreezeAfter > TimeSpan.Zero
                ? TimeSpan.FromTicks(Math.Max(options.IdleWait.Ticks, (options.FreezeAfter + TimeSpan.FromSeconds(Math.Min(options.FreezeAfter.TotalSeconds / 2, 5) + 3)).Ticks))
                : options.IdleWait;
            await Task.Delay(idleWait, cancellationToken);
            var memory = HostMemory.Sandboxes(daemon.CgroupParent);
            var rssAfter = daemon.ResidentBytes();
            const double MiB = 1024 * 1024;
            var n = Math.Max(memory.Count, 1);
            report.AddFact("idle sandboxes at once (created + pool)", "idle_sandboxes", "", memory.Count);
            report.AddFact("idle sandbox memory, cgroup memory.usage_in_bytes (rss + page cache charged)", "idle_sandbox_cgroup_usage_mib", "MiB", memory.Sum(m => m.UsageBytes) / MiB / n);
            report.AddFact("idle sandbox memory, cgroup memory.stat total_rss", "idle_sandbox_cgroup_rss_mib", "MiB", memory.Sum(m => m.RssBytes) / MiB / n);
            report.AddFact("idle sandbox memory, PSS of its processes (smaps_rollup)", "mib_per_idle_sandbox", "MiB", memory.Sum(m => m.PssBytes) / MiB / n);
            report.AddFact("processes per idle sandbox", "idle_sandbox_processes", "", (double)memory.Sum(m => m.Processes) / n);
            report.AddFact($"paddockd RSS growth per created sandbox ({rssBefore / MiB:0} -> {rssAfter / MiB:0} MiB for {ids.Count})", "daemon_rss_growth_per_sandbox_mib", "MiB", (rssAfter - rssBefore) / MiB / Math.Max(ids.Count, 1));

            // What the idle sandboxes cost in CPU: their threads' wake-ups and CPU time over a window of doing nothing.
            // With the idle freezer (paddockd --freeze-after) the frozen ones and the rest (the pool's members, never
            // frozen, and any the sweep has not reached) are counted apart: the rest is the unfrozen idle agent's cost.
            var window = options.IdleActivityWindow;
            var frozenBefore = HostMemory.FrozenSandboxes(daemon.CgroupParent);
            var before = HostMemory.SandboxThreads(daemon.CgroupParent);
            var hostBefore = HostCpu.Read();
            await Task.Delay(window, cancellationToken);
            var after = HostMemory.SandboxThreads(daemon.CgroupParent);
            var hostAfter = HostCpu.Read();
            var frozenAfter = HostMemory.FrozenSandboxes(daemon.CgroupParent);
            // Frozen through the whole window: at both reads (nothing touches them in between).
            frozenBefore.IntersectWith(frozenAfter);
            var (activity, ended) = HostMemory.Between(before, after);
            var perMinute = TimeSpan.FromMinutes(1) / window / n;
            log.WriteLine($"  {after.Count} threads in the idle sandboxes ({ended} ended in the window, left out); over {window.TotalSeconds:0} s: {activity.ContextSwitches} context switches, {activity.CpuNanoseconds / 1e6:0.0} ms CPU in all");
            report.AddFact("threads per idle sandbox", "idle_sandbox_threads", "", (double)after.Count / n);
            report.AddFact($"idle sandbox wake-ups (context switches of its threads) per minute, over {window.TotalSeconds:0} s", "idle_sandbox_wakeups_per_min", "/min", activity.ContextSwitches * perMinute);
            report.AddFact($"idle sandbox CPU time per minute, over {window.TotalSeconds:0} s", "idle_sandbox_cpu_ms_per_min", "ms/min", activity.CpuNanoseconds / 1e6 * perMinute);
            report.AddFact($"idle sandboxes frozen through the window (paddockd --freeze-after {options.FreezeAfter.TotalSeconds:0} s)", "idle_sandboxes_frozen", "", frozenBefore.Count);
            report.AddFact("host CPU busy over the window (of all cores)", "idle_host_cpu_busy_share", "", HostCpu.BusyShare(hostBefore, hostAfter));
            var frozenSplit = SplitActivity(before, after, daemon.CgroupParent, frozenBefore);
            if (frozenBefore.Count > 0)
            {
                var perFrozen = TimeSpan.FromMinutes(1) / window / frozenBefore.Count;
                report.AddFact("frozen idle sandbox wake-ups per minute", "frozen_sandbox_wakeups_per_min", "/min", frozenSplit.Frozen.ContextSwitches * perFrozen);
                report.AddFact("frozen idle sandbox CPU time per minute", "frozen_sandbox_cpu_ms_per_min", "ms/min", frozenSplit.Frozen.CpuNanoseconds / 1e6 * perFrozen);
            }
            var awakeCount = memory.Count - frozenBefore.Count;
            if (awakeCount > 0)
            {
                var perAwake = TimeSpan.FromMinutes(1) / window / awakeCount;
                report.AddFact($"unfrozen idle sandbox wake-ups per minute ({awakeCount}: the pool's and any not frozen)", "unfrozen_sandbox_wakeups_per_min", "/min", frozenSplit.Awake.ContextSwitches * perAwake);
                report.AddFact("unfrozen idle sandbox CPU time per minute", "unfrozen_sandbox_cpu_ms_per_min", "ms/min", frozenSplit.Awake.CpuNanoseconds / 1e6 * perAwake);
            }

            // The daemon still answers while they idle: pooled create + echo, each after the pool refilled and, as in
            // the pooled section, once the host is quiet (the last run's teardown and the refill's runc run and
            // warm-up are the daemon's own background work, and they cost more with 1,000 sandboxes' mounts on the
            // host). Then the same without the quiet wait, each run on the heels of the last one's background work.
            var loaded = new Samples("ms", Direction.LowerIsBetter);
            var loadedBusy = new Samples("ms", Direction.LowerIsBetter);
            var loadedUnquiet = 0;
            for (var i = 0; i < 10; i++)
            {
                await WaitForPoolAsync(daemon, client, cancellationToken);
                loadedUnquiet += await HostCpu.WaitUntilQuietAsync(TimeSpan.FromSeconds(10), cancellationToken) ? 0 : 1;
                loaded.Add((await CycleAsync(client, cold: false, cancellationToken)).Milliseconds);
            }
            for (var i = 0; i < 10; i++)
            {
                await WaitForPoolAsync(daemon, client, cancellationToken);
                loadedBusy.Add((await CycleAsync(client, cold: false, cancellationToken)).Milliseconds);
            }
            report.AddFigure($"create to first output, pooled, with {memory.Count} idle sandboxes", "loaded_create_to_first_output_ms", loaded);
            report.AddFigure("  the same without the quiet wait (the last run's teardown and refill still running)", "loaded_busy_create_to_first_output_ms", loadedBusy);
            report.AddFact("pooled create to first output p50 with the idle sandboxes", "loaded_create_to_output_p50_ms", "ms", loaded.P50);
            report.AddFact($"of those runs, started before the host was quiet (waited up to 10 s)", "loaded_unquiet_starts", "", loadedUnquiet);
            // The runs' own sandboxes are new and awake; the idle ones stay frozen through them (nothing touches them).
            var stillFrozen = HostMemory.FrozenSandboxes(daemon.CgroupParent);
            report.AddFact("idle sandboxes still frozen after the runs", "idle_sandboxes_frozen_after_runs", "", stillFrozen.Count);

            // What the first call after idling costs: `echo hi` on an idle sandbox (with the freezer on, a frozen one,
            // thawed by the call; either way its agent has trimmed its memory), then at once a second one on the same
            // sandbox (awake), alternating over up to 10 sandboxes. A run with --freeze-after 0 gives the same pair
            // without the freeze, so the thaw's own share is the difference between the two runs' first figures.
            var thawed = new Samples("ms", Direction.LowerIsBetter);
            var awake = new Samples("ms", Direction.LowerIsBetter);
            foreach (var sandbox in created.Where(s => options.FreezeAfter == TimeSpan.Zero || stillFrozen.Contains(s.Id)).Take(10))
            {
                var clock = Stopwatch.StartNew();
                await client.EchoHiAsync(sandbox, cancellationToken);
                thawed.Add(clock.Elapsed.TotalMilliseconds);
                clock.Restart();
                await client.EchoHiAsync(sandbox, cancellationToken);
                awake.Add(clock.Elapsed.TotalMilliseconds);
            }
            if (thawed.Count > 0)
            {
                report.AddComparison(options.FreezeAfter == TimeSpan.Zero ? "echo hi on an idle sandbox (not frozen)" : "echo hi on a frozen idle sandbox (thaw included)", "idle_first_echo_ms", thawed, "the next echo, awake", awake);
            }
        }
        finally
        {
            foreach (var id in ids)
            {
                await client.KillAsync(id, CancellationToken.None);
            }
        }
    }

    /// <summary>The activity between two thread readings, split into the threads of <paramref name="frozen"/> sandboxes and the rest.</summary>
    private static (HostMemory.ThreadActivity Frozen, HostMemory.ThreadActivity Awake) SplitActivity(
        Dictionary<(int Pid, int Tid), HostMemory.ThreadActivity> before, Dictionary<(int Pid, int Tid), HostMemory.ThreadActivity> after,
        string cgroupParent, HashSet<string> frozen)
    {
        // Which process belongs to a frozen sandbox: its memory cgroup's name (a sandbox's processes are all in one).
        var frozenPids = new HashSet<int>();
        foreach (var id in frozen)
        {
            try
            {
                foreach (var line in File.ReadAllLines(Path.Combine(HostMemory.MemoryHierarchy, cgroupParent, id, "cgroup.procs")))
                {
                    if (int.TryParse(line, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid))
                    {
                        frozenPids.Add(pid);
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // gone meanwhile
            }
        }
        var frozenBefore = before.Where(t => frozenPids.Contains(t.Key.Pid)).ToDictionary();
        var frozenAfter = after.Where(t => frozenPids.Contains(t.Key.Pid)).ToDictionary();
        var awakeBefore = before.Where(t => !frozenPids.Contains(t.Key.Pid)).ToDictionary();
        var awakeAfter = after.Where(t => !frozenPids.Contains(t.Key.Pid)).ToDictionary();
        return (HostMemory.Between(frozenBefore, frozenAfter).Activity, HostMemory.Between(awakeBefore, awakeAfter).Activity);
    }

    /// <summary>
    /// One timed create and echo; the kill afterwards is not in the figure. Returns the milliseconds, whether it was
    /// pooled, and the split: the create's part of them, how long a second echo took (with
    /// <paramref name="secondCommand"/>, else 0: what the first command costs over a later one), and the kill.
    /// </summary>
    private static async Task<(double Milliseconds, bool Pooled, (double CreateMs, double SecondMs, double KillMs, double ServerMs, double InitMs, CreatedSandbox Sandbox) Split)> CycleAsync(
        DaemonClient client, bool cold, CancellationToken cancellationToken, bool secondCommand = false)
    {
        var clock = Stopwatch.StartNew();
        var sandbox = await client.CreateAsync(cancellationToken, cold);
        var createMs = clock.Elapsed.TotalMilliseconds;
        double ms;
        var secondMs = 0.0;
        try
        {
            await client.EchoHiAsync(sandbox, cancellationToken);
            ms = clock.Elapsed.TotalMilliseconds;
            if (secondCommand)
            {
                var second = Stopwatch.StartNew();
                await client.EchoHiAsync(sandbox, cancellationToken);
                secondMs = second.Elapsed.TotalMilliseconds;
            }
        }
        catch
        {
            await client.KillAsync(sandbox.Id, CancellationToken.None);
            throw;
        }
        var kill = Stopwatch.StartNew();
        await client.KillAsync(sandbox.Id, CancellationToken.None);
        return (ms, sandbox.Pooled, (createMs, secondMs, kill.Elapsed.TotalMilliseconds,
            sandbox.StepMilliseconds("total") ?? double.NaN, sandbox.StepMilliseconds("pool-init") ?? double.NaN, sandbox));
    }

    /// <summary>
    /// Waits (untimed, bounded) until the daemon's sandbox cgroups number its live sandboxes plus a full pool. A pool
    /// sandbox still starting has its cgroup already, so this can end a moment early; the figures say how many
    /// creates fell back cold.
    /// </summary>
    private async Task WaitForPoolAsync(PaddockdProcess daemon, DaemonClient client, CancellationToken cancellationToken)
    {
        if (options.PoolSize == 0 || _poolStuck)
        {
            return;
        }
        var waited = Stopwatch.StartNew();
        while (waited.Elapsed < options.PoolFillLimit)
        {
            var live = (await client.ListAsync(cancellationToken)).Count;
            if (daemon.SandboxCgroups() - live >= options.PoolSize)
            {
                return;
            }
            await Task.Delay(20, cancellationToken);
        }
        // Once it could not refill (the host is out of something: see the daemon's log), later waits would only add up.
        _poolStuck = true;
        log.WriteLine($"  warning: the pool did not refill to {options.PoolSize} within {options.PoolFillLimit.TotalSeconds:0} s; no more waits for it");
    }

    /// <summary>The root filesystem of the newest built base template in the templates directory.</summary>
    private string BaseRootfs() => BaseRootfs(options.TemplatesDir);

    /// <summary>The rootfs of the newest built base template under <paramref name="templatesDir"/> (the raw baselines run in it).</summary>
    internal static string BaseRootfs(string templatesDir)
    {
        var dir = Path.Combine(templatesDir, "base");
        var newest = Directory.EnumerateDirectories(dir)
            .Where(d => File.Exists(Path.Combine(d, "template.json")) && Directory.Exists(Path.Combine(d, "rootfs")))
            .MaxBy(d => File.GetLastWriteTimeUtc(Path.Combine(d, "template.json")));
        return newest is null
            ? throw new DirectoryNotFoundException($"no built base template under {dir}")
            : Path.Combine(newest, "rootfs");
    }
}
