using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Paddock.Bench.Native;
using Paddock.Bench.Reporting;
using Paddock.Envd.Process;

namespace Paddock.Bench.Agent;

/// <summary>Settings of one <c>agent</c> run (see <see cref="Program"/> for the command line).</summary>
internal sealed record AgentBenchOptions
{
    public required string Binary { get; init; }

    public int RoundTrips { get; init; } = 1000;

    public int StartSamples { get; init; } = 20;

    public int StreamMiB { get; init; } = 512;

    public int FileMiB { get; init; } = 256;

    /// <summary>Timed runs of each throughput measurement (after one warmup run).</summary>
    public int Runs { get; init; } = 5;

    /// <summary>The sections to run (start, roundtrip, stream, files); empty: all of them.</summary>
    public IReadOnlySet<string> Only { get; init; } = new HashSet<string>();

    /// <summary>
    /// Also measure stream and files through paddockd's proxy, to the same agent binary inside a runc sandbox
    /// (<see cref="ProxiedSandbox"/>), alternating with the loopback agent and the baselines.
    /// </summary>
    public bool ThroughDaemon { get; init; }

    /// <summary>paddockd for <see cref="ThroughDaemon"/> (scripts/publish-daemon's).</summary>
    public string DaemonBinary { get; init; } = "";

    /// <summary>Upper bound on the time one section may take; a section stops early when it passes.</summary>
    public TimeSpan SectionBudget { get; init; } = TimeSpan.FromSeconds(90);
}

/// <summary>
/// The agent's end-to-end figures against bare baselines, all measured in this process in one run: the round trip of
/// <c>/bin/true</c>, stdout streaming, and file upload/download. Agent and baseline samples are taken in alternating
/// blocks, so a change in the machine's load during the run hits both sides alike.
/// </summary>
internal sealed class AgentBench(AgentBenchOptions options, TextWriter log)
{
    private const int RoundTripBlock = 50;

    /// <summary>The user of the round trip that runs as someone other than the agent (root).</summary>
    private const string OtherUser = "nobody";

    public async Task<Report> RunAsync(CancellationToken cancellationToken)
    {
        var report = new Report();
        var binary = new FileInfo(options.Binary);
        report.AddFact("agent binary size", "binary_bytes", "bytes", binary.Length);
        report.AddFact("agent binary size", "binary_mib", "MiB", binary.Length / 1048576.0);

        var scratch = Directory.CreateTempSubdirectory("paddock-bench-");
        try
        {
            if (Runs("start"))
            {
                var (startToReady, startCpu) = await MeasureStartToReadyAsync(scratch.FullName, cancellationToken);
                report.AddFact($"start-to-ready, p50 of {startToReady.Count} (spawn to first 204 from /health)", "start_to_ready_ms_p50", "ms", startToReady.P50);
                report.AddFact("start-to-ready, worst", "start_to_ready_ms_max", "ms", startToReady.Percentile(100));
                report.AddFact($"agent CPU per start, ready and SIGTERM stop, p50 of {startCpu.Count}", "start_stop_cpu_ms_p50", "ms", startCpu.P50);
            }

            using var agent = await AgentHost.StartAsync(options.Binary, scratch.FullName, cancellationToken);
            // The pid lets a profiler attach (perf record -p PID) while a section runs.
            log.WriteLine($"agent pid {agent.Pid} on {agent.BaseAddress}");
            using var client = new EnvdClient(agent.BaseAddress);
            var cpu = new CpuMeter(agent.Pid);
            await using var proxied = options.ThroughDaemon && (Runs("stream") || Runs("files"))
                ? await ProxiedSandbox.StartAsync(options.Binary, options.DaemonBinary, log, cancellationToken)
                : null;
            if (Runs("roundtrip"))
            {
                report.AddAll(await MeasureRoundTripAsync(client, cpu, report, cancellationToken));
            }
            if (Runs("stream"))
            {
                report.AddAll(await MeasureStreamingAsync(client, cpu, proxied, report, cancellationToken));
            }
            if (Runs("files"))
            {
                report.AddAll(await MeasureFilesAsync(client, cpu, proxied, report, scratch.FullName, cancellationToken));
            }
            var exit = agent.Stop();
            report.AddFact("agent exit code after SIGTERM", "agent_exit_code", "", exit);
        }
        finally
        {
            scratch.Delete(recursive: true);
        }
        return report;
    }

    private bool Runs(string section) => options.Only.Count == 0 || options.Only.Contains(section);

    /// <summary>
    /// Start-to-ready of each start, and the agent's whole CPU time from spawn to its reaping after a SIGTERM stop
    /// (getrusage of this process's reaped children: the agent is the only child reaped in between).
    /// </summary>
    private async Task<(Samples StartToReady, Samples Cpu)> MeasureStartToReadyAsync(string workdir, CancellationToken cancellationToken)
    {
        log.WriteLine($"start-to-ready: {options.StartSamples} starts (+2 warmup)");
        var samples = new Samples("ms", Direction.LowerIsBetter);
        var cpu = new Samples("ms", Direction.LowerIsBetter);
        var budget = Stopwatch.StartNew();
        for (var i = 0; i < options.StartSamples + 2 && budget.Elapsed < options.SectionBudget; i++)
        {
            var reapedBefore = CpuTime.ReapedChildren();
            using (var agent = await AgentHost.StartAsync(options.Binary, workdir, cancellationToken))
            {
                if (i >= 2)
                {
                    samples.Add(agent.StartToReady.TotalMilliseconds);
                }
            }
            if (i >= 2)
            {
                cpu.Add((CpuTime.ReapedChildren() - reapedBefore).TotalMilliseconds);
            }
        }
        return (samples, cpu);
    }

    private async Task<IEnumerable<Comparison>> MeasureRoundTripAsync(EnvdClient client, CpuMeter cpu, Report report, CancellationToken cancellationToken)
    {
        log.WriteLine($"round trip of /bin/true: {options.RoundTrips} each through the agent (proto, json) and bare posix_spawn+waitpid");
        var request = new StartRequest { Process = new ProcessConfig { Cmd = "/bin/true" }, Stdin = false };
        // As another user (the SDK's default is `user`, not the agent's root): the spawn switches identity. `nobody`
        // exists on every Debian host; its home does not, so the command runs in /.
        var asUser = new StartRequest { Process = new ProcessConfig { Cmd = "/bin/true", Cwd = "/" }, Stdin = false };
        using var bare = new Spawner("/bin/true", [], quiet: true);
        var proto = new Samples("ms", Direction.LowerIsBetter);
        var json = new Samples("ms", Direction.LowerIsBetter);
        var user = new Samples("ms", Direction.LowerIsBetter);
        var baseline = new Samples("ms", Direction.LowerIsBetter);
        var protoCpu = new CpuFigures("`true` round trip, Connect proto", "true_round_trip_proto", "call");
        var bareCpu = new CpuFigures("`true` round trip, bare posix_spawn+waitpid", "true_round_trip_bare", "call");

        // Warmup: JIT, the keep-alive connection, the page cache of /bin/true.
        for (var i = 0; i < 100; i++)
        {
            Expect(await client.RunAsync(request, json: false, cancellationToken), 0, 0);
            Expect(await client.RunAsync(request, json: true, cancellationToken), 0, 0);
            Expect(await client.RunAsync(asUser, json: true, cancellationToken, OtherUser), 0, 0);
            ExpectExit(Spawner.Wait(bare.Spawn()), 0);
        }

        var budget = Stopwatch.StartNew();
        var clock = new Stopwatch();
        while (proto.Count < options.RoundTrips && budget.Elapsed < options.SectionBudget)
        {
            var mark = cpu.Start();
            for (var i = 0; i < RoundTripBlock; i++)
            {
                clock.Restart();
                var outcome = await client.RunAsync(request, json: false, cancellationToken);
                clock.Stop();
                Expect(outcome, 0, 0);
                proto.Add(clock.Elapsed.TotalMilliseconds);
            }
            var use = mark.Stop();
            protoCpu.Add("agent", use.Agent, RoundTripBlock);
            protoCpu.Add("client", use.Client, RoundTripBlock);
            protoCpu.Add("command", use.AgentChildren, RoundTripBlock);
            for (var i = 0; i < RoundTripBlock; i++)
            {
                clock.Restart();
                var outcome = await client.RunAsync(request, json: true, cancellationToken);
                clock.Stop();
                Expect(outcome, 0, 0);
                json.Add(clock.Elapsed.TotalMilliseconds);
            }
            for (var i = 0; i < RoundTripBlock; i++)
            {
                clock.Restart();
                var outcome = await client.RunAsync(asUser, json: true, cancellationToken, OtherUser);
                clock.Stop();
                Expect(outcome, 0, 0);
                user.Add(clock.Elapsed.TotalMilliseconds);
            }
            mark = cpu.Start();
            for (var i = 0; i < RoundTripBlock; i++)
            {
                clock.Restart();
                var code = Spawner.Wait(bare.Spawn());
                clock.Stop();
                ExpectExit(code, 0);
                baseline.Add(clock.Elapsed.TotalMilliseconds);
            }
            use = mark.Stop();
            bareCpu.Add("spawner", use.Client, RoundTripBlock);
            bareCpu.Add("command", use.Baseline, RoundTripBlock);
        }
        protoCpu.Report(report);
        bareCpu.Report(report);
        const string baseName = "posix_spawn+waitpid /bin/true";
        return
        [
            new("`true` round trip, Connect proto", "true_round_trip_proto", proto, baseName, baseline, 3),
            new("`true` round trip, Connect JSON (SDK)", "true_round_trip_json", json, baseName, baseline, 3),
            new($"`true` round trip, Connect JSON, as {OtherUser}", "true_round_trip_json_user", user, baseName, baseline, 3),
        ];
    }

    private async Task<IEnumerable<Comparison>> MeasureStreamingAsync(EnvdClient client, CpuMeter cpu, ProxiedSandbox? proxied, Report report, CancellationToken cancellationToken)
    {
        var bytes = (long)options.StreamMiB * 1024 * 1024;
        var count = bytes.ToString(CultureInfo.InvariantCulture);
        log.WriteLine($"stdout streaming: head -c {options.StreamMiB}M /dev/zero, {options.Runs} runs (+1 warmup) each way (agent proto, agent JSON, head | cat, head's pipe here, head | cat | cat)");
        var request = new StartRequest { Process = new ProcessConfig { Cmd = "/usr/bin/head", Args = { "-c", count, "/dev/zero" } }, Stdin = false };
        using var pipeline = new Spawner("/bin/sh", ["-c", $"/usr/bin/head -c {count} /dev/zero | /bin/cat > /dev/null"], quiet: true);
        using var head = new Spawner("/usr/bin/head", ["-c", count, "/dev/zero"], quiet: true);
        // The agent is a relay: it reads head's pipe and writes the bytes on to a reader (the client) in another
        // process. A second cat in the pipeline is the same: head, a copy out of a pipe and into the next, a reader.
        using var relay = new Spawner("/bin/sh", ["-c", $"/usr/bin/head -c {count} /dev/zero | /bin/cat | /bin/cat > /dev/null"], quiet: true);

        var agent = new Samples("MiB/s", Direction.HigherIsBetter);
        var agentJson = new Samples("MiB/s", Direction.HigherIsBetter);
        var catPipe = new Samples("MiB/s", Direction.HigherIsBetter);
        var ownPipe = new Samples("MiB/s", Direction.HigherIsBetter);
        var relayPipe = new Samples("MiB/s", Direction.HigherIsBetter);
        var viaDaemon = new Samples("MiB/s", Direction.HigherIsBetter);
        var viaDaemonJson = new Samples("MiB/s", Direction.HigherIsBetter);
        var daemonCpu = proxied is null ? null : new CpuMeter(proxied.DaemonPid);
        var figures = new CpuFigures("stdout streaming", "stdout_stream", "MiB");
        var eventSize = new Samples("KiB", Direction.HigherIsBetter);
        var budget = Stopwatch.StartNew();
        for (var run = 0; run <= options.Runs && budget.Elapsed < options.SectionBudget; run++)
        {
            var mark = cpu.Start();
            var clock = Stopwatch.StartNew();
            var outcome = await client.RunAsync(request, json: false, cancellationToken);
            var agentSeconds = clock.Elapsed.TotalSeconds;
            var agentUse = mark.Stop();
            Expect(outcome, 0, bytes);

            // The same through the JSON codec, which E2B's SDKs use (output travels as base64 text).
            mark = cpu.Start();
            clock.Restart();
            var jsonOutcome = await client.RunAsync(request, json: true, cancellationToken);
            var jsonSeconds = clock.Elapsed.TotalSeconds;
            var jsonUse = mark.Stop();
            Expect(jsonOutcome, 0, bytes);

            // Through paddockd's proxy to the same agent in a sandbox (paddockd's CPU in the "agent" slot of its meter).
            double proxySeconds = 0, proxyJsonSeconds = 0;
            CpuUse proxyUse = default, proxyJsonUse = default;
            if (proxied is not null)
            {
                mark = daemonCpu!.Start();
                clock.Restart();
                Expect(await proxied.Client.RunAsync(request, json: false, cancellationToken), 0, bytes);
                proxySeconds = clock.Elapsed.TotalSeconds;
                proxyUse = mark.Stop();
                mark = daemonCpu.Start();
                clock.Restart();
                Expect(await proxied.Client.RunAsync(request, json: true, cancellationToken), 0, bytes);
                proxyJsonSeconds = clock.Elapsed.TotalSeconds;
                proxyJsonUse = mark.Stop();
            }

            mark = cpu.Start();
            clock.Restart();
            ExpectExit(Spawner.Wait(pipeline.Spawn()), 0);
            var catSeconds = clock.Elapsed.TotalSeconds;
            var pipelineUse = mark.Stop();

            mark = cpu.Start();
            clock.Restart();
            var read = ReadChildStdout(head);
            var ownSeconds = clock.Elapsed.TotalSeconds;
            var ownUse = mark.Stop();

            mark = cpu.Start();
            clock.Restart();
            ExpectExit(Spawner.Wait(relay.Spawn()), 0);
            var relaySeconds = clock.Elapsed.TotalSeconds;
            var relayUse = mark.Stop();
            if (read != bytes)
            {
                throw new InvalidDataException($"read {read} bytes from head's pipe, expected {bytes}");
            }

            if (run > 0)
            {
                agent.Add(options.StreamMiB / agentSeconds);
                agentJson.Add(options.StreamMiB / jsonSeconds);
                catPipe.Add(options.StreamMiB / catSeconds);
                ownPipe.Add(options.StreamMiB / ownSeconds);
                relayPipe.Add(options.StreamMiB / relaySeconds);
                if (proxied is not null)
                {
                    viaDaemon.Add(options.StreamMiB / proxySeconds);
                    viaDaemonJson.Add(options.StreamMiB / proxyJsonSeconds);
                    figures.Add("paddockd", proxyUse.Agent, options.StreamMiB);
                    figures.Add("client_paddockd", proxyUse.Client, options.StreamMiB);
                    figures.Add("paddockd_json", proxyJsonUse.Agent, options.StreamMiB);
                }
                eventSize.Add(bytes / 1024.0 / Math.Max(1, outcome.DataEvents));
                figures.Add("agent", agentUse.Agent, options.StreamMiB);
                figures.Add("client", agentUse.Client, options.StreamMiB);
                figures.Add("agent_json", jsonUse.Agent, options.StreamMiB);
                figures.Add("client_json", jsonUse.Client, options.StreamMiB);
                figures.Add("head", ownUse.Baseline, options.StreamMiB);
                figures.Add("pipeline", pipelineUse.Baseline, options.StreamMiB);
                figures.Add("relay_pipeline", relayUse.Baseline, options.StreamMiB);
                // The pipeline's sh, head and cat, less head as measured alone: what cat (the baseline's reader) used.
                // A difference of two runs, so noisy (it can even come out below zero on a loaded machine).
                figures.Add("cat", pipelineUse.Baseline - ownUse.Baseline, options.StreamMiB);
            }
        }
        figures.Report(report);
        report.AddFact($"stdout streaming, mean data event size (p50 of {eventSize.Count}, min {eventSize.Percentile(0):0.#}, max {eventSize.Percentile(100):0.#})", "stdout_stream_event_kib", "KiB", eventSize.P50);
        List<Comparison> proxy = proxied is null ? [] :
        [
            new("stdout streaming through paddockd", "stdout_stream_proxy", viaDaemon, "head | cat | cat > /dev/null", relayPipe, 0.5),
            new("stdout streaming, JSON, through paddockd", "stdout_stream_json_proxy", viaDaemonJson, "head | cat | cat > /dev/null", relayPipe, 0.5),
            new("stdout streaming through paddockd", "stdout_stream_proxy_vs_cat", viaDaemon, "head | cat > /dev/null", catPipe, 0.5),
            new("stdout streaming, JSON, through paddockd", "stdout_stream_json_proxy_vs_cat", viaDaemonJson, "head | cat > /dev/null", catPipe, 0.5),
            // The hop itself: the same agent binary, on loopback against in a sandbox behind paddockd (no aim of its own).
            new("stdout streaming through paddockd", "stdout_stream_proxy_vs_loopback", viaDaemon, "the agent on loopback", agent, 0),
            new("stdout streaming, JSON, through paddockd", "stdout_stream_json_proxy_vs_loopback", viaDaemonJson, "the agent on loopback, JSON", agentJson, 0),
        ];
        return
        [
            .. proxy,
            new("stdout streaming through Start", "stdout_stream", agent, "head | cat > /dev/null", catPipe, 0.5),
            new("stdout streaming through Start", "stdout_stream_vs_own_pipe", agent, "head's pipe read here", ownPipe, 0.5),
            new("stdout streaming, Connect JSON (SDK)", "stdout_stream_json", agentJson, "head | cat > /dev/null", catPipe, 0.5),
            new("stdout streaming through Start", "stdout_stream_vs_relay", agent, "head | cat | cat > /dev/null", relayPipe, 0.5),
            new("stdout streaming, Connect JSON (SDK)", "stdout_stream_json_vs_relay", agentJson, "head | cat | cat > /dev/null", relayPipe, 0.5),
        ];
    }

    /// <summary>Spawns the program with stdout on a pipe and reads the pipe to its end here; returns the bytes read.</summary>
    private static unsafe long ReadChildStdout(Spawner spawner)
    {
        var fds = stackalloc int[2];
        if (Posix.Pipe2(fds, Posix.O_CLOEXEC) != 0)
        {
            throw new IOException($"pipe2 failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
        int pid;
        try
        {
            pid = spawner.Spawn(stdoutFd: fds[1]);
        }
        finally
        {
            Posix.Close(fds[1]);
        }
        long total = 0;
        var buffer = (byte*)NativeMemory.Alloc(256 * 1024);
        try
        {
            while (true)
            {
                var n = Posix.Read(fds[0], buffer, 256 * 1024);
                if (n > 0)
                {
                    total += n;
                }
                else if (n == 0)
                {
                    break;
                }
                else if (Marshal.GetLastPInvokeError() != Posix.EINTR)
                {
                    throw new IOException($"read from pipe failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
                }
            }
        }
        finally
        {
            NativeMemory.Free(buffer);
            Posix.Close(fds[0]);
        }
        ExpectExit(Spawner.Wait(pid), 0);
        return total;
    }

    private async Task<IEnumerable<Comparison>> MeasureFilesAsync(EnvdClient client, CpuMeter cpu, ProxiedSandbox? proxied, Report report, string scratch, CancellationToken cancellationToken)
    {
        var bytes = (long)options.FileMiB * 1024 * 1024;
        log.WriteLine($"files: {options.FileMiB} MiB upload (octet-stream, multipart) and download vs cp and cat, {options.Runs} runs (+1 warmup) each");
        var source = Path.Combine(scratch, "source.bin");
        await WriteRandomFileAsync(source, bytes, cancellationToken);
        var target = Path.Combine(scratch, "target.bin");
        using var cp = new Spawner("/bin/cp", [source, target], quiet: true);
        // cp copies inside the kernel (copy_file_range); cat moves the bytes through a process, as the agent must.
        using var cat = new Spawner("/bin/sh", ["-c", "exec /bin/cat \"$0\" > \"$1\"", source, target], quiet: true);
        // A transfer is two processes and a connection between them: one reads the file and sends, the other receives
        // and writes. `cat src | cat > dst` moves the bytes the same number of times, through a pipe.
        using var catPipe = new Spawner("/bin/sh", ["-c", "/bin/cat \"$0\" | /bin/cat > \"$1\"", source, target], quiet: true);

        var uploadOctet = new Samples("MiB/s", Direction.HigherIsBetter);
        var uploadMultipart = new Samples("MiB/s", Direction.HigherIsBetter);
        var download = new Samples("MiB/s", Direction.HigherIsBetter);
        var copy = new Samples("MiB/s", Direction.HigherIsBetter);
        var copyCpu = new CpuFigures("copies", "copy", "MiB");
        var octetCpu = new CpuFigures("upload, octet-stream", "upload_octet_stream", "MiB");
        var multipartCpu = new CpuFigures("upload, multipart", "upload_multipart", "MiB");
        var downloadCpu = new CpuFigures("download", "download", "MiB");
        var catCopy = new Samples("MiB/s", Direction.HigherIsBetter);
        var catPipeCopy = new Samples("MiB/s", Direction.HigherIsBetter);
        var proxyOctet = new Samples("MiB/s", Direction.HigherIsBetter);
        var proxyMultipart = new Samples("MiB/s", Direction.HigherIsBetter);
        var proxyDownload = new Samples("MiB/s", Direction.HigherIsBetter);
        var proxyCpu = new CpuFigures("through paddockd", "files_proxy", "MiB");
        var daemonCpu = proxied is null ? null : new CpuMeter(proxied.DaemonPid);
        // Inside the sandbox: its own disk (the writable layer), not a tmpfs charged to its memory.
        const string sandboxFile = "/var/tmp/paddock-bench.bin";
        var budget = Stopwatch.StartNew();
        for (var run = 0; run <= options.Runs && budget.Elapsed < options.SectionBudget; run++)
        {
            // Every side writes a new file of the same size on the same filesystem, so each pays the same write cost.
            File.Delete(target);
            var mark = cpu.Start();
            var clock = Stopwatch.StartNew();
            ExpectExit(Spawner.Wait(cp.Spawn()), 0);
            var cpSeconds = clock.Elapsed.TotalSeconds;
            var cpUse = mark.Stop();
            ExpectSize(target, bytes);

            File.Delete(target);
            mark = cpu.Start();
            clock.Restart();
            ExpectExit(Spawner.Wait(cat.Spawn()), 0);
            var catSeconds = clock.Elapsed.TotalSeconds;
            var catUse = mark.Stop();
            ExpectSize(target, bytes);

            File.Delete(target);
            mark = cpu.Start();
            clock.Restart();
            ExpectExit(Spawner.Wait(catPipe.Spawn()), 0);
            var catPipeSeconds = clock.Elapsed.TotalSeconds;
            var catPipeUse = mark.Stop();
            ExpectSize(target, bytes);

            File.Delete(target);
            mark = cpu.Start();
            clock.Restart();
            await client.UploadAsync(source, target, multipart: false, cancellationToken);
            var octetSeconds = clock.Elapsed.TotalSeconds;
            var octetUse = mark.Stop();
            ExpectSize(target, bytes);

            File.Delete(target);
            mark = cpu.Start();
            clock.Restart();
            await client.UploadAsync(source, target, multipart: true, cancellationToken);
            var multipartSeconds = clock.Elapsed.TotalSeconds;
            var multipartUse = mark.Stop();
            ExpectSize(target, bytes);

            File.Delete(target);
            mark = cpu.Start();
            clock.Restart();
            var got = await client.DownloadAsync(source, target, cancellationToken);
            var downloadSeconds = clock.Elapsed.TotalSeconds;
            var downloadUse = mark.Stop();
            if (got != bytes)
            {
                throw new InvalidDataException($"downloaded {got} bytes, expected {bytes}");
            }

            double proxyOctetSeconds = 0, proxyMultipartSeconds = 0, proxyDownloadSeconds = 0;
            CpuUse proxyOctetUse = default, proxyMultipartUse = default, proxyDownloadUse = default;
            if (proxied is not null)
            {
                mark = daemonCpu!.Start();
                clock.Restart();
                await proxied.Client.UploadAsync(source, sandboxFile, multipart: false, cancellationToken);
                proxyOctetSeconds = clock.Elapsed.TotalSeconds;
                proxyOctetUse = mark.Stop();

                mark = daemonCpu.Start();
                clock.Restart();
                await proxied.Client.UploadAsync(source, sandboxFile, multipart: true, cancellationToken);
                proxyMultipartSeconds = clock.Elapsed.TotalSeconds;
                proxyMultipartUse = mark.Stop();

                // The file the multipart upload just wrote, back to the host: its size checks that upload too.
                File.Delete(target);
                mark = daemonCpu.Start();
                clock.Restart();
                got = await proxied.Client.DownloadAsync(sandboxFile, target, cancellationToken);
                proxyDownloadSeconds = clock.Elapsed.TotalSeconds;
                proxyDownloadUse = mark.Stop();
                if (got != bytes)
                {
                    throw new InvalidDataException($"downloaded {got} bytes through paddockd, expected {bytes}");
                }
            }

            if (run > 0)
            {
                copyCpu.Add("cp", cpUse.Baseline, options.FileMiB);
                copyCpu.Add("cat", catUse.Baseline, options.FileMiB);
                copyCpu.Add("cat_pipe", catPipeUse.Baseline, options.FileMiB);
                octetCpu.Add("agent", octetUse.Agent, options.FileMiB);
                octetCpu.Add("client", octetUse.Client, options.FileMiB);
                multipartCpu.Add("agent", multipartUse.Agent, options.FileMiB);
                multipartCpu.Add("client", multipartUse.Client, options.FileMiB);
                downloadCpu.Add("agent", downloadUse.Agent, options.FileMiB);
                downloadCpu.Add("client", downloadUse.Client, options.FileMiB);
                copy.Add(options.FileMiB / cpSeconds);
                catCopy.Add(options.FileMiB / catSeconds);
                catPipeCopy.Add(options.FileMiB / catPipeSeconds);
                uploadOctet.Add(options.FileMiB / octetSeconds);
                uploadMultipart.Add(options.FileMiB / multipartSeconds);
                download.Add(options.FileMiB / downloadSeconds);
                if (proxied is not null)
                {
                    proxyOctet.Add(options.FileMiB / proxyOctetSeconds);
                    proxyMultipart.Add(options.FileMiB / proxyMultipartSeconds);
                    proxyDownload.Add(options.FileMiB / proxyDownloadSeconds);
                    proxyCpu.Add("paddockd_upload_octet", proxyOctetUse.Agent, options.FileMiB);
                    proxyCpu.Add("paddockd_upload_multipart", proxyMultipartUse.Agent, options.FileMiB);
                    proxyCpu.Add("paddockd_download", proxyDownloadUse.Agent, options.FileMiB);
                }
            }
        }
        if (!File.ReadAllBytes(source).AsSpan(0, 4096).SequenceEqual(File.ReadAllBytes(target).AsSpan(0, 4096)))
        {
            throw new InvalidDataException("the downloaded file differs from the source");
        }
        File.Delete(target);
        copyCpu.Report(report);
        octetCpu.Report(report);
        multipartCpu.Report(report);
        downloadCpu.Report(report);
        proxyCpu.Report(report);
        const string baseName = "cp of the same file";
        List<Comparison> proxy = proxied is null ? [] :
        [
            new("upload through paddockd, octet-stream", "upload_octet_stream_proxy", proxyOctet, baseName, copy, 0.5),
            new("upload through paddockd, multipart (SDK)", "upload_multipart_proxy", proxyMultipart, baseName, copy, 0.5),
            new("download through paddockd", "download_proxy", proxyDownload, baseName, copy, 0.5),
            new("upload through paddockd, multipart (SDK)", "upload_multipart_proxy_vs_cat_pipe", proxyMultipart, "cat src | cat > dst", catPipeCopy, 0.5),
            new("download through paddockd", "download_proxy_vs_cat_pipe", proxyDownload, "cat src | cat > dst", catPipeCopy, 0.5),
            // The hop itself (no aim of its own).
            new("upload through paddockd, multipart (SDK)", "upload_multipart_proxy_vs_loopback", proxyMultipart, "the agent on loopback", uploadMultipart, 0),
            new("download through paddockd", "download_proxy_vs_loopback", proxyDownload, "the agent on loopback", download, 0),
        ];
        return
        [
            .. proxy,
            new("upload POST /files, octet-stream", "upload_octet_stream", uploadOctet, baseName, copy, 0.5),
            new("upload POST /files, multipart (SDK)", "upload_multipart", uploadMultipart, baseName, copy, 0.5),
            new("download GET /files", "download", download, baseName, copy, 0.5),
            new("upload POST /files, octet-stream", "upload_octet_stream_vs_cat", uploadOctet, "cat src > dst", catCopy, 0.5),
            new("download GET /files", "download_vs_cat", download, "cat src > dst", catCopy, 0.5),
            new("upload POST /files, multipart (SDK)", "upload_multipart_vs_cat_pipe", uploadMultipart, "cat src | cat > dst", catPipeCopy, 0.5),
            new("upload POST /files, octet-stream", "upload_octet_stream_vs_cat_pipe", uploadOctet, "cat src | cat > dst", catPipeCopy, 0.5),
            new("download GET /files", "download_vs_cat_pipe", download, "cat src | cat > dst", catPipeCopy, 0.5),
        ];
    }

    private static async Task WriteRandomFileAsync(string path, long bytes, CancellationToken cancellationToken)
    {
        var block = new byte[1024 * 1024];
        await using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1);
        for (long written = 0; written < bytes; written += block.Length)
        {
            Random.Shared.NextBytes(block);
            await file.WriteAsync(block.AsMemory(0, (int)Math.Min(block.Length, bytes - written)), cancellationToken);
        }
    }

    private static void Expect(RunOutcome outcome, int exitCode, long stdoutBytes)
    {
        if (outcome.ExitCode != exitCode || outcome.StdoutBytes != stdoutBytes)
        {
            throw new InvalidDataException($"the agent reported exit {outcome.ExitCode} with {outcome.StdoutBytes} stdout bytes; expected exit {exitCode} with {stdoutBytes}");
        }
    }

    private static void ExpectExit(int code, int expected)
    {
        if (code != expected)
        {
            throw new InvalidDataException($"baseline process exited with {code}, expected {expected}");
        }
    }

    private static void ExpectSize(string path, long bytes)
    {
        var length = new FileInfo(path).Length;
        if (length != bytes)
        {
            throw new InvalidDataException($"{path} has {length} bytes, expected {bytes}");
        }
    }
}
