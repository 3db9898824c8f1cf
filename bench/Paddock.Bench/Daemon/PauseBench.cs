using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Paddock.Bench.Reporting;

namespace Paddock.Bench.Daemon;

/// <summary>
/// <c>paddock-bench pause</c> (issue 15): pause with memory and resume of gVisor sandboxes holding 16, 256 and 1024 MiB
/// of touched memory, through a real paddockd as an SDK does it (<c>POST /sandboxes/{id}/pause</c>, then
/// <c>POST /v2/sandboxes/{id}/connect</c> and a command), against a raw <c>runsc checkpoint</c> / <c>runsc restore</c>
/// of an equivalent container holding the same memory, in the same run. Also the paused sandbox's size on disk against
/// its memory, and (one line) the runc tier's filesystem-only pause. The load average is printed with the figures.
/// </summary>
internal static class PauseBench
{
    public const string Usage = """
        usage: paddock-bench pause [options]
          --binary PATH       paddockd (default: artifacts/paddockd/paddockd under the repository)
          --runsc PATH        the runsc of the raw baseline (default /usr/local/lib/paddock/runsc)
          --sizes N,M         MiB of touched memory per sandbox (default 16,256,1024)
          --runs N            pause/resume cycles of each sandbox, and raw checkpoint/restore cycles (default 3)
          --json              also print the figures as one JSON line at the end
        Needs root, runsc (the gvisor tier) and runc.
        """;

    private const double MiB = 1024 * 1024;

    // The process that holds the memory: a bytearray of N MiB written with random bytes (every page touched, none
    // the same), its CRC-32 printed with its pid at the start and again on each SIGUSR1, then asleep. Output to the
    // file or stdout named by the second argument; argv[1] is N.
    private const string Holder = """
        import os, sys, zlib, signal, time
        n = int(sys.argv[1]) << 20
        b = bytearray(n)
        for i in range(0, n, 1 << 20):
            b[i:i + (1 << 20)] = os.urandom(1 << 20)
        out = open(sys.argv[2], 'a') if sys.argv[2] != '-' else sys.stdout
        def report(*_):
            out.write('crc %d %08x\n' % (os.getpid(), zlib.crc32(b)))
            out.flush()
        signal.signal(signal.SIGUSR1, report)
        report()
        while True:
            time.sleep(3600)
        """;

    private const string SandboxOutput = "/tmp/paddock-pausebench.out";

    public static async Task<int> RunAsync(ReadOnlyMemory<string> args)
    {
        int[] sizes = [16, 256, 1024];
        var runs = 3;
        var json = false;
        var binary = DaemonCommand.DefaultBinary();
        var runsc = "/usr/local/lib/paddock/runsc";
        var span = args.ToArray();
        try
        {
            for (var i = 0; i < span.Length; i++)
            {
                string Next() => i + 1 < span.Length ? span[++i] : throw new ArgumentException($"{span[i]} needs a value");
                switch (span[i])
                {
                    case "--sizes": sizes = [.. Next().Split(',').Select(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is > 0 and <= 65536 ? n : throw new ArgumentException($"--sizes: '{s}' is not a MiB count (1-65536)"))]; break;
                    case "--runs": runs = int.TryParse(Next(), NumberStyles.None, CultureInfo.InvariantCulture, out var r) && r is > 0 and <= 100 ? r : throw new ArgumentException("--runs needs a count from 1 to 100"); break;
                    case "--binary": binary = Path.GetFullPath(Next()); break;
                    case "--runsc": runsc = Path.GetFullPath(Next()); break;
                    case "--json": json = true; break;
                    case "-h" or "--help": Console.Error.WriteLine(Usage); return 0;
                    default: throw new ArgumentException($"unknown option '{span[i]}'");
                }
            }
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"paddock-bench pause: {ex.Message}\n{Usage}");
            return 2;
        }
        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
        var log = Console.Error;
        var options = new DaemonBenchOptions { Binary = binary, Isolation = "gvisor", PoolSize = 0, IdleSandboxes = 0, FanoutSandboxes = 0, Clients = 10 };
        log.WriteLine($"paddock-bench pause: {binary}, sizes {string.Join(',', sizes)} MiB, {runs} run(s), {Environment.ProcessorCount} CPUs, " +
            $"{HostAvailableMiB():0} MiB available, load average {LoadAverage()}");
        // The pause bench's address pool (10.227.0.0/16), apart from every other daemon's.
        await using var daemon = await PaddockdProcess.StartAsync(options, TimeSpan.FromMinutes(30), log, cancel.Token,
            new Dictionary<string, string> { ["PADDOCK_Gvisor__Network__Pool"] = "10.227.0.0/16" });
        using var client = new DaemonClient(daemon.Url, daemon.ApiKey);
        var rootfs = DaemonBench.BaseRootfs(options.TemplatesDir);
        var report = new Report();
        foreach (var size in sizes)
        {
            // Memory for the holder and the agent beside it (the default 512 MiB is too little from 256 MiB up); the
            // host must have it three times over: the sandbox, the raw container holding as much, and the image
            // written while the Sentry still holds the memory (the page cache keeps it).
            var memoryMB = Math.Max(512, size + 256);
            var available = HostAvailableMiB();
            if (available < 3 * memoryMB)
            {
                log.WriteLine($"  {size} MiB: NOT RUN: the host has {available:0} MiB available, and a sandbox of {memoryMB} MiB, the raw container and an image need about {3 * memoryMB} MiB");
                report.AddFact($"{size} MiB: not run (host memory available {available:0} MiB < {3 * memoryMB} MiB)", $"pause_{size}_not_run", "", 1);
                continue;
            }
            try
            {
                // The raw side: the same holder in the base template's rootfs, runsc with the tier's platform and
                // overlay choice and no network (the tier's netstack has nothing to hold here).
                using var raw = new RawRunBaseline("runsc", runsc, ["--network=none", "--platform=systrap", "--overlay2=none"], rootfs,
                    ["/usr/bin/python3", "-c", Holder, size.ToString(CultureInfo.InvariantCulture), "-"]);
                await MeasureSizeAsync(daemon, client, raw, size, memoryMB, runs, report, log, cancel.Token);
            }
            catch (Exception ex) when (!cancel.IsCancellationRequested)
            {
                // Said, not skipped: the figures of the other sizes still print.
                log.WriteLine($"  {size} MiB: FAILED: {ex.Message}");
                report.AddFact($"{size} MiB: failed ({ex.GetType().Name}: {FirstLine(ex.Message)})", $"pause_{size}_failed", "", 1);
            }
        }
        try
        {
            await MeasureRuncAsync(client, runs, report, log, cancel.Token);
        }
        catch (Exception ex) when (!cancel.IsCancellationRequested)
        {
            log.WriteLine($"  runc filesystem pause: FAILED: {ex.Message}");
            report.AddFact($"runc filesystem pause: failed ({FirstLine(ex.Message)})", "runc_pause_failed", "", 1);
        }
        Console.Out.WriteLine();
        Console.Out.WriteLine($"load average at the end: {LoadAverage()}");
        report.PrintTable(Console.Out);
        if (json)
        {
            report.PrintJson(Console.Out);
        }
        return 0;
    }

    /// <summary>
    /// One size: a sandbox whose holder touched <paramref name="size"/> MiB, paused and resumed <paramref name="runs"/>
    /// times (its memory checked after each), then killed; and a raw container with the same holder, checkpointed and
    /// restored as many times. The two alternate, so a change in the machine's load hits both.
    /// </summary>
    private static async Task MeasureSizeAsync(PaddockdProcess daemon, DaemonClient client, RawRunBaseline raw, int size, int memoryMB, int runs,
        Report report, TextWriter log, CancellationToken cancellationToken)
    {
        var pause = new Samples("ms", Direction.LowerIsBetter);
        var rawCheckpoint = new Samples("ms", Direction.LowerIsBetter);
        var resume = new Samples("ms", Direction.LowerIsBetter);
        var connect = new Samples("ms", Direction.LowerIsBetter);
        var rawRestore = new Samples("ms", Direction.LowerIsBetter);
        var rawRestoreToOutput = new Samples("ms", Direction.LowerIsBetter);
        // The gVisor runtime's own part of each (its log lines 3060 and 3061): the rest is the lifecycle's and the API's.
        var runtimePause = new Samples("ms", Direction.LowerIsBetter);
        var runtimeResume = new Samples("ms", Direction.LowerIsBetter);
        double imageBytes = 0, directoryBytes = 0, footprintBytes = 0, rawImageBytes = 0;
        var unanswered = 0;
        var step = "setup";
        var firstOutput = double.NaN;
        string? failure = null;

        var sandbox = await client.CreateAsync($$"""{"templateID":"base","timeout":3600,"memoryMB":{{memoryMB}}}""", cancellationToken);
        var rawDir = Directory.CreateTempSubdirectory("paddock-bench-pause-raw-").FullName;
        try
        {
            var clock = Stopwatch.StartNew();
            var (pid, crc) = await StartHolderAsync(client, sandbox, size, cancellationToken);
            var rss = await ResidentMiBAsync(client, sandbox, pid, cancellationToken);
            log.WriteLine($"  {size} MiB: sandbox {sandbox.Id} ({memoryMB} MiB), holder pid {pid} resident {rss:0} MiB, crc {crc}, in {clock.Elapsed.TotalSeconds:0.0} s");
            if (rss < size)
            {
                throw new InvalidDataException($"the holder is resident with {rss:0} MiB, less than the {size} MiB it touched");
            }
            var rawId = $"paddock-bench-pause-{Environment.ProcessId}-{size}";
            var rawOut = Path.Combine(rawDir, "out-0");
            raw.RunDetached(rawId, rawOut);
            var rawCrc = await WaitForCrcAsync(rawOut, 1, TimeSpan.FromMinutes(3), cancellationToken);
            log.WriteLine($"  {size} MiB: raw container {rawId} holding it, crc {rawCrc}");

            for (var run = 0; run < runs; run++)
            {
                footprintBytes = SandboxMemoryBytes(daemon);
                step = $"cycle {run + 1}: pause";
                clock.Restart();
                await PauseAsync(client, sandbox.Id, memory: true, cancellationToken);
                pause.Add(clock.Elapsed.TotalMilliseconds);
                var sandboxDir = Path.Combine(daemon.StateDir, "gvisor", "shared", "sandboxes", sandbox.Id);
                imageBytes = ApparentBytes(Path.Combine(sandboxDir, "checkpoint"));
                directoryBytes = AllocatedBytes(sandboxDir);

                step = $"cycle {run + 1}: connect (resume)";
                clock.Restart();
                await ConnectAsync(client, sandbox.Id, cancellationToken);
                connect.Add(clock.Elapsed.TotalMilliseconds);
                step = $"cycle {run + 1}: echo after the resume";
                if (await TryEchoHiAsync(client, sandbox, cancellationToken) is { } refused)
                {
                    // Answered 201, yet the agent's port refused the command (seen here: a 502 "port 49983 is not
                    // open" right after a resume). Counted and said; then whether it comes back, bounded.
                    unanswered++;
                    var since = clock.Elapsed.TotalMilliseconds;
                    log.WriteLine($"  {size} MiB paddock: UNANSWERED after the resume ({since:0} ms after the connect): {FirstLine(refused)}");
                    var back = false;
                    for (var retry = 0; retry < 40 && !back; retry++)
                    {
                        await Task.Delay(250, cancellationToken);
                        back = await TryEchoHiAsync(client, sandbox, cancellationToken) is null;
                    }
                    if (!back)
                    {
                        throw new IOException($"the sandbox did not answer echo within 10 s of its resume's first refusal: {FirstLine(refused)}");
                    }
                    log.WriteLine($"  {size} MiB paddock: answered again {clock.Elapsed.TotalMilliseconds:0} ms after the connect (not counted as a resume figure)");
                    firstOutput = double.NaN;
                }
                else
                {
                    firstOutput = clock.Elapsed.TotalMilliseconds;
                    resume.Add(firstOutput);
                }
                runtimePause.Add(RuntimeMilliseconds(daemon, sandbox.Id, " paused (memory kept: True) in "));
                runtimeResume.Add(RuntimeMilliseconds(daemon, sandbox.Id, " resumed (from memory: True) in "));
                step = $"cycle {run + 1}: the holder's CRC after the resume";
                var after = await CheckHolderAsync(client, sandbox, pid, run + 2, cancellationToken);
                if (after != crc)
                {
                    throw new InvalidDataException($"the holder's memory changed across the pause: crc {crc} before, {after} after");
                }
                log.WriteLine($"  {size} MiB paddock: pause {pause.Last:0} ms (runtime {runtimePause.Last:0} ms; image {imageBytes / MiB:0.0} MiB, directory {directoryBytes / MiB:0.0} MiB on disk, " +
                    $"cgroup memory before {footprintBytes / MiB:0.0} MiB), connect {connect.Last:0} ms (runtime {runtimeResume.Last:0} ms), to first output {(double.IsNaN(firstOutput) ? "refused" : firstOutput.ToString("0", CultureInfo.InvariantCulture) + " ms")}, crc intact (load {LoadAverage()})");

                step = $"cycle {run + 1}: raw checkpoint and restore";
                var image = Path.Combine(rawDir, $"image-{run}");
                Directory.CreateDirectory(image);
                clock.Restart();
                raw.Checkpoint(rawId, image);
                rawCheckpoint.Add(clock.Elapsed.TotalMilliseconds);
                rawImageBytes = ApparentBytes(image);
                raw.Delete(rawId);
                rawId = $"paddock-bench-pause-{Environment.ProcessId}-{size}-{run + 1}";
                rawOut = Path.Combine(rawDir, $"out-{run + 1}");
                clock.Restart();
                raw.RestoreDetached(rawId, image, rawOut);
                rawRestore.Add(clock.Elapsed.TotalMilliseconds);
                raw.ExecEchoHi(rawId);
                rawRestoreToOutput.Add(clock.Elapsed.TotalMilliseconds);
                raw.Signal(rawId, "USR1");
                var rawAfter = await WaitForCrcAsync(rawOut, 1, TimeSpan.FromMinutes(2), cancellationToken);
                if (rawAfter != rawCrc)
                {
                    throw new InvalidDataException($"the raw container's memory changed across its checkpoint: crc {rawCrc} before, {rawAfter} after");
                }
                Directory.Delete(image, recursive: true);
                log.WriteLine($"  {size} MiB raw runsc: checkpoint {rawCheckpoint.Last:0} ms (image {rawImageBytes / MiB:0.0} MiB), restore {rawRestore.Last:0} ms, " +
                    $"to exec output {rawRestoreToOutput.Last:0} ms, crc intact (load {LoadAverage()})");
            }
            raw.Delete(rawId);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            // Said, with the figures of the cycles that completed.
            failure = $"at {step}: {ex.GetType().Name}: {FirstLine(ex.Message)}";
            log.WriteLine($"  {size} MiB: FAILED at {step} after {pause.Count} pause(s): {ex.Message}");
        }
        finally
        {
            await client.KillAsync(sandbox.Id, CancellationToken.None);
            Directory.Delete(rawDir, recursive: true);
        }
        if (failure is not null)
        {
            report.AddFact($"{size} MiB: FAILED after {pause.Count} pause(s) ({failure})", $"pause_{size}_failed", "", 1);
        }
        report.AddFact($"{size} MiB: resumes whose first command was refused (then answered within 10 s)", $"resume_{size}_unanswered", "", unanswered);
        if (pause.Count == 0 || rawCheckpoint.Count == 0 || resume.Count == 0 || rawRestore.Count == 0)
        {
            return;
        }
        report.Add(new Comparison($"{size} MiB: pause with memory (POST pause) vs raw runsc checkpoint", $"pause_{size}_vs_raw_checkpoint",
            pause, "runsc checkpoint", rawCheckpoint, 1.2));
        report.Add(new Comparison($"{size} MiB: connect to first output of echo vs raw runsc restore + exec echo", $"resume_{size}_to_output_vs_raw",
            resume, "restore + exec", rawRestoreToOutput, 1.2));
        report.Add(new Comparison($"{size} MiB: the connect (resume) call alone vs raw runsc restore --detach", $"connect_{size}_vs_raw_restore",
            connect, "runsc restore", rawRestore, 1.2));
        report.AddFact($"{size} MiB: of the pause, the gVisor runtime's part p50 (checkpoint, fsync of the image, release of the host's resources)", $"pause_{size}_runtime_p50_ms", "ms", runtimePause.P50);
        report.AddFact($"{size} MiB: of the connect, the gVisor runtime's part p50 (mounts, netns, link, runsc restore, agent ready)", $"connect_{size}_runtime_p50_ms", "ms", runtimeResume.P50);
        var pauseAim = size / 1024.0 * 1000;
        report.AddFact($"{size} MiB: pause p50 (aim: under 1 s per GiB, {pauseAim:0} ms: {(pause.P50 <= pauseAim ? "met" : "MISSED")})", $"pause_{size}_p50_ms", "ms", pause.P50);
        var resumeAim = size >= 1024 ? 1000 : 100;
        report.AddFact($"{size} MiB: resume to first output p50 (aim: under {resumeAim} ms: {(resume.P50 <= resumeAim ? "met" : "MISSED")})", $"resume_{size}_to_output_p50_ms", "ms", resume.P50);
        report.AddFact($"{size} MiB: memory image of the paused sandbox", $"paused_{size}_image_mib", "MiB", imageBytes / MiB);
        report.AddFact($"{size} MiB: paused sandbox's directory on disk (allocated: image, writable layer, disk image)", $"paused_{size}_directory_mib", "MiB", directoryBytes / MiB);
        report.AddFact($"{size} MiB: its memory before the pause (the sandbox cgroup's usage)", $"paused_{size}_cgroup_memory_mib", "MiB", footprintBytes / MiB);
        report.AddFact($"{size} MiB: raw runsc image", $"raw_{size}_image_mib", "MiB", rawImageBytes / MiB);
    }

    /// <summary>
    /// The runc tier's pause (filesystem only: its processes end) and resume (a new boot) of a base sandbox, to the
    /// first output of echo, against nothing: runc has no memory to keep, so there is no raw equivalent to time.
    /// </summary>
    private static async Task MeasureRuncAsync(DaemonClient client, int runs, Report report, TextWriter log, CancellationToken cancellationToken)
    {
        var pause = new Samples("ms", Direction.LowerIsBetter);
        var resume = new Samples("ms", Direction.LowerIsBetter);
        var sandbox = await client.CreateAsync("""{"templateID":"base","timeout":3600,"isolation":"runc"}""", cancellationToken);
        try
        {
            await client.EchoHiAsync(sandbox, cancellationToken);
            for (var run = 0; run < runs; run++)
            {
                var clock = Stopwatch.StartNew();
                await PauseAsync(client, sandbox.Id, memory: false, cancellationToken);
                pause.Add(clock.Elapsed.TotalMilliseconds);
                clock.Restart();
                await ConnectAsync(client, sandbox.Id, cancellationToken);
                await client.EchoHiAsync(sandbox, cancellationToken);
                resume.Add(clock.Elapsed.TotalMilliseconds);
                log.WriteLine($"  runc filesystem pause {pause.Last:0} ms, resume to first output {resume.Last:0} ms (load {LoadAverage()})");
            }
        }
        finally
        {
            await client.KillAsync(sandbox.Id, CancellationToken.None);
        }
        report.AddFact("runc tier: filesystem-only pause p50", "runc_pause_p50_ms", "ms", pause.P50);
        report.AddFact("runc tier: resume (a new boot) to first output p50", "runc_resume_to_output_p50_ms", "ms", resume.P50);
    }

    /// <summary>echo through the proxy: null when "hi" came back, else what refused it (an HTTP error or a stream that ended).</summary>
    private static async Task<string?> TryEchoHiAsync(DaemonClient client, CreatedSandbox sandbox, CancellationToken cancellationToken)
    {
        try
        {
            await client.EchoHiAsync(sandbox, cancellationToken);
            return null;
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException)
        {
            return ex.Message;
        }
    }

    /// <summary>
    /// The milliseconds of the latest runtime log line of <paramref name="id"/> with <paramref name="what"/> (the
    /// daemon's output, which the bench keeps the last 200 lines of); NaN when none is there.
    /// </summary>
    private static double RuntimeMilliseconds(PaddockdProcess daemon, string id, string what)
    {
        var marker = $"Sandbox {id}{what}";
        var line = daemon.RecentOutput().Split('\n').LastOrDefault(l => l.Contains(marker, StringComparison.Ordinal));
        if (line is null)
        {
            return double.NaN;
        }
        var rest = line[(line.IndexOf(marker, StringComparison.Ordinal) + marker.Length)..];
        return double.TryParse(rest.Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out var ms) ? ms : double.NaN;
    }

    /// <summary>Starts the holder detached (setsid: it outlives the command) and waits, bounded, for its first CRC line.</summary>
    private static async Task<(int Pid, string Crc)> StartHolderAsync(DaemonClient client, CreatedSandbox sandbox, int size, CancellationToken cancellationToken)
    {
        await client.RunToExitAsync(sandbox, "/usr/bin/setsid",
            ["-f", "/bin/sh", "-c", "exec python3 -c \"$0\" \"$1\" \"$2\" >>\"$2\".err 2>&1", Holder, size.ToString(CultureInfo.InvariantCulture), SandboxOutput],
            cancellationToken);
        // Bounded: 1 GiB of os.urandom in gVisor takes seconds; 3 minutes at 500 ms a poll.
        for (var poll = 0; poll < 360; poll++)
        {
            var text = await client.RunForOutputAsync(sandbox, "/bin/sh", ["-c", $"cat {SandboxOutput} {SandboxOutput}.err 2>/dev/null; true"], cancellationToken);
            var lines = CrcLines(text);
            if (lines.Count > 0)
            {
                return lines[0];
            }
            if (text.Contains("Error", StringComparison.Ordinal))
            {
                throw new IOException($"the holder failed: {text}");
            }
            await Task.Delay(500, cancellationToken);
        }
        throw new TimeoutException($"the holder of {size} MiB printed no CRC within 3 minutes");
    }

    /// <summary>The holder's resident set in MiB, as the sandbox's kernel (the Sentry) reports it.</summary>
    private static async Task<double> ResidentMiBAsync(DaemonClient client, CreatedSandbox sandbox, int pid, CancellationToken cancellationToken)
    {
        var status = await client.RunForOutputAsync(sandbox, "/bin/cat", [$"/proc/{pid}/status"], cancellationToken);
        var line = status.Split('\n').FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
            ?? throw new InvalidDataException($"no VmRSS in /proc/{pid}/status: {status}");
        return long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }

    /// <summary>Signals the holder (USR1) and returns the CRC it then prints: its <paramref name="count"/>th line.</summary>
    private static async Task<string> CheckHolderAsync(DaemonClient client, CreatedSandbox sandbox, int pid, int count, CancellationToken cancellationToken)
    {
        var script = $"kill -USR1 {pid} || exit 1; i=0; while [ $(grep -c '^crc' {SandboxOutput}) -lt {count} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat {SandboxOutput}";
        var text = await client.RunForOutputAsync(sandbox, "/bin/sh", ["-c", script], cancellationToken);
        var lines = CrcLines(text);
        if (lines.Count < count || lines[^1].Pid != pid)
        {
            throw new InvalidDataException($"the holder (pid {pid}) did not answer its signal after the resume: '{text}'");
        }
        return lines[^1].Crc;
    }

    private static async Task<string> WaitForCrcAsync(string file, int count, TimeSpan limit, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < limit)
        {
            var text = File.Exists(file) ? await File.ReadAllTextAsync(file, cancellationToken) : "";
            var lines = CrcLines(text);
            if (lines.Count >= count)
            {
                return lines[count - 1].Crc;
            }
            await Task.Delay(200, cancellationToken);
        }
        throw new TimeoutException($"no CRC line in {file} within {limit.TotalSeconds:0} s: '{(File.Exists(file) ? File.ReadAllText(file) : "")}'");
    }

    private static List<(int Pid, string Crc)> CrcLines(string text) =>
        // Trimmed of NULs: a restored container writes on at its stdout's offset at the checkpoint, so the new file
        // starts with a hole.
        [.. text.Split('\n').Select(l => l.Trim('\0', ' ').Split(' ')).Where(p => p.Length == 3 && p[0] == "crc")
            .Select(p => (int.Parse(p[1], CultureInfo.InvariantCulture), p[2]))];

    private static async Task PauseAsync(DaemonClient client, string id, bool memory, CancellationToken cancellationToken)
    {
        using var content = new StringContent(memory ? """{"memory":true}""" : """{"memory":false}""", Encoding.UTF8, "application/json");
        using var response = await client.Http.PostAsync($"/sandboxes/{id}/pause", content, cancellationToken);
        if (response.StatusCode != HttpStatusCode.NoContent)
        {
            throw new HttpRequestException($"POST /sandboxes/{id}/pause answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }
    }

    private static async Task ConnectAsync(DaemonClient client, string id, CancellationToken cancellationToken)
    {
        using var content = new StringContent("""{"timeout":3600}""", Encoding.UTF8, "application/json");
        using var response = await client.Http.PostAsync($"/v2/sandboxes/{id}/connect", content, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (response.StatusCode != HttpStatusCode.Created)
        {
            throw new HttpRequestException($"POST /v2/sandboxes/{id}/connect answered {(int)response.StatusCode} (201: resumed): {text}");
        }
        _ = JsonNode.Parse(text)?["sandboxID"] ?? throw new InvalidDataException($"connect answered no sandbox: {text}");
    }

    /// <summary>The memory cgroups' usage of the daemon's sandboxes (one at a time here): the Sentry, the gofer and what the sandbox touched.</summary>
    private static double SandboxMemoryBytes(PaddockdProcess daemon) =>
        HostMemory.Sandboxes(daemon.CgroupParent).Sum(s => (double)s.UsageBytes);

    private static double ApparentBytes(string directory) =>
        Directory.Exists(directory)
            ? new DirectoryInfo(directory).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => (double)f.Length)
            : 0;

    /// <summary>Blocks allocated under <paramref name="directory"/> (<c>du</c>, one filesystem): the sparse disk image counts what it holds.</summary>
    private static double AllocatedBytes(string directory)
    {
        var start = new ProcessStartInfo("/usr/bin/du") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-s", "-x", "-B1", directory })
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEnd();
        process.StandardError.ReadToEnd();
        process.WaitForExit(TimeSpan.FromSeconds(30));
        return double.TryParse(output.Split('\t')[0], NumberStyles.None, CultureInfo.InvariantCulture, out var bytes) ? bytes : double.NaN;
    }

    private static double HostAvailableMiB() =>
        File.ReadLines("/proc/meminfo").Where(l => l.StartsWith("MemAvailable:", StringComparison.Ordinal))
            .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0).First();

    private static string FirstLine(string text) => text.Split('\n')[0];

    private static string LoadAverage() => ForkBench.LoadAverage();
}
