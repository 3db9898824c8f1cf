using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;

namespace Paddock.Security.Tests;

/// <summary>
/// Exhaustion from inside a sandbox: each attack runs in a victim sandbox of its own (killed afterwards, whatever
/// happens) and must stop at that sandbox's limit, with the host, the neighbour and the daemon unharmed.
/// </summary>
[Collection(BatteryCollection.Name)]
public sealed class ExhaustionTests(BatteryFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public async Task A_fork_bomb_stops_at_the_pids_limit()
    {
        await using var victim = await TestSandbox.CreateAsync(fixture.Daemon, fixture.Http, ""","memoryMB":1024""");
        var sandboxPids = HostLeftovers.SandboxCgroup(fixture.Daemon.CgroupParent, victim.Id, "pids");
        Assert.NotNull(sandboxPids);
        if (victim.Isolation == "gvisor")
        {
            await ForkBombOnGvisorAsync(victim, sandboxPids);
            return;
        }
        // The sandbox's processes are counted in its child cgroup "work"; the agent keeps a reserve in the parent
        // (issue 5, Runtimes/Host/PidReserve.cs).
        var pids = Path.Combine(sandboxPids, "work");
        var max = long.Parse(File.ReadAllText(Path.Combine(pids, "pids.max")).Trim(), CultureInfo.InvariantCulture);

        // Three times the limit of short sleeps (posix_spawn: no copy of the Python parent per child, so the memory
        // limit is not what stops it), in the background with its verdict in a file: while the limit is reached,
        // the agent itself cannot start threads or processes, so the command's own stream may not survive it.
        var started = await victim.RunAsync($$"""
            cat > /tmp/bomb.py <<'PY'
            import errno, os
            quiet = [(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0), (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)]
            spawned, err = 0, "none"
            for _ in range({{max * 3}}):
                try:
                    os.posix_spawn("/bin/sleep", ["sleep", "5"], {}, file_actions=quiet)
                    spawned += 1
                except OSError as ex:
                    err = errno.errorcode[ex.errno]
                    break
            open("/tmp/bomb.out", "w").write(f"{err} {spawned}")
            PY
            (setsid python3 /tmp/bomb.py >/dev/null 2>&1 &); echo started
            """);
        Assert.Equal("started\n", started.Stdout);
        var verdict = "";
        for (var i = 0; i < 60 && verdict.Length == 0; i++)
        {
            await Task.Delay(TimeSpan.FromSeconds(1));
            try
            {
                verdict = (await victim.RunAsync("cat /tmp/bomb.out 2>/dev/null || true", timeout: TimeSpan.FromSeconds(20))).Stdout.Trim();
            }
            catch (IOException)
            {
                // the agent could not start the command while the limit was reached: try again (bounded)
            }
        }

        var fields = verdict.Split(' ');
        Assert.True(fields.Length == 2 && fields[0] == "EAGAIN", "the bomb ended with: " + verdict);
        Assert.True(long.Parse(fields[1], CultureInfo.InvariantCulture) < max, verdict);
        Assert.Equal("alive\n", (await victim.RunAsync("echo alive")).Stdout);
        Assert.True(long.Parse(File.ReadAllText(Path.Combine(pids, "pids.current")), CultureInfo.InvariantCulture) <= max);
        var events = File.ReadAllText(Path.Combine(pids, "pids.events"));
        Assert.True(long.Parse(events.Split(' ')[1], CultureInfo.InvariantCulture) > 0, "pids.events: " + events);
        await fixture.AssertHostUnchangedAsync();
    }

    /// <summary>
    /// On gVisor the sandbox's processes are Sentry tasks: the host's pids cgroup bounds only the Sentry's, gofer's and
    /// stubs' host tasks (the limit plus Gvisor:HostTaskAllowance; SECURITY.md), and a process that exited unwaited
    /// holds none. The process limit inside is RLIMIT_NPROC (GvisorConfig), which the Sentry enforces per user. What is
    /// asserted: the same bomb as on runc stops with EAGAIN under that limit, the host tasks never pass the cgroup's
    /// limit, and the sandbox, its neighbour and the host stay as they were. The Sentry spawns far slower than runc
    /// (about 24 s for the 1022 spawns on a quiet 2-core host), so the wait for the verdict is longer than on runc.
    /// </summary>
    private async Task ForkBombOnGvisorAsync(TestSandbox victim, string cgroup)
    {
        var hostMax = long.Parse(File.ReadAllText(Path.Combine(cgroup, "pids.max")).Trim(), CultureInfo.InvariantCulture);
        var limits = (await victim.RunAsync("grep '^Max processes' /proc/self/limits")).Stdout;
        var nproc = long.Parse(limits.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2], CultureInfo.InvariantCulture);
        Assert.True(nproc < hostMax, $"RLIMIT_NPROC {nproc} inside, the host's pids.max {hostMax}");
        var started = await victim.RunAsync($$"""
            cat > /tmp/bomb.py <<'PY'
            import errno, os
            quiet = [(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0), (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)]
            spawned, err = 0, "none"
            for _ in range({{nproc * 3}}):
                try:
                    os.posix_spawn("/bin/sleep", ["sleep", "5"], {}, file_actions=quiet)
                    spawned += 1
                except OSError as ex:
                    err = errno.errorcode[ex.errno]
                    break
            open("/tmp/bomb.out", "w").write(f"{err} {spawned}")
            PY
            (setsid python3 /tmp/bomb.py >/dev/null 2>&1 &); echo started
            """);
        Assert.Equal("started\n", started.Stdout);
        var verdict = "";
        long peak = 0;
        var clock = Stopwatch.StartNew();
        // Bounded in count (300 looks) and time (6 minutes).
        for (var i = 0; i < 300 && verdict.Length == 0 && clock.Elapsed < TimeSpan.FromMinutes(6); i++)
        {
            await Task.Delay(TimeSpan.FromSeconds(1));
            try
            {
                peak = Math.Max(peak, long.Parse(File.ReadAllText(Path.Combine(cgroup, "pids.current")), CultureInfo.InvariantCulture));
            }
            catch (IOException)
            {
                // the cgroup went with the sandbox: the assertions below say so
            }
            try
            {
                verdict = (await victim.RunAsync("cat /tmp/bomb.out 2>/dev/null || true", timeout: TimeSpan.FromSeconds(20))).Stdout.Trim();
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException or TaskCanceledException)
            {
                // the Sentry is busy: look again (bounded)
            }
        }
        output.WriteLine($"gVisor fork bomb: {(verdict.Length == 0 ? "no verdict" : verdict)} after {clock.Elapsed.TotalSeconds:0} s; RLIMIT_NPROC {nproc}; host tasks peaked at {peak} of {hostMax}");
        var fields = verdict.Split(' ');
        Assert.True(fields.Length == 2 && fields[0] == "EAGAIN", $"the bomb ended with: '{verdict}' after {clock.Elapsed.TotalSeconds:0} s");
        Assert.True(long.Parse(fields[1], CultureInfo.InvariantCulture) < nproc, verdict);
        Assert.True(peak <= hostMax, $"the sandbox's host tasks reached {peak}, over its pids.max {hostMax}");
        Assert.Equal("alive\n", (await victim.RunAsync("echo alive")).Stdout);
        Assert.Equal("ok\n", (await fixture.Attacker.RunAsync("echo ok")).Stdout);
        await fixture.AssertHostUnchangedAsync();
    }

    [Fact]
    public async Task A_memory_hog_is_killed_inside_its_sandbox_only()
    {
        await using var victim = await TestSandbox.CreateAsync(fixture.Daemon, fixture.Http, ""","memoryMB":256""");
        var memory = HostLeftovers.SandboxCgroup(fixture.Daemon.CgroupParent, victim.Id, "memory");
        Assert.NotNull(memory);
        if (victim.Isolation == "gvisor")
        {
            await MemoryHogOnGvisorAsync(victim, memory);
            return;
        }

        var hog = await victim.RunAsync(MemoryHog, timeout: TimeSpan.FromSeconds(120));

        Assert.DoesNotContain("survived", hog.Stdout, StringComparison.Ordinal);
        Assert.NotEqual(0, hog.ExitCode);
        if (victim.Isolation != "gvisor")
        {
            Assert.Contains("oom_kill 1", File.ReadAllText(Path.Combine(memory, "memory.oom_control")).Replace("oom_kill 0", "", StringComparison.Ordinal).Replace("oom_kill ", "oom_kill 1 ", StringComparison.Ordinal), StringComparison.Ordinal);
        }
        // On gVisor the Sentry reports the cgroup's limit as the sandbox's memory and ends the process that exceeds it
        // itself (GvisorRuntimeTests); the host's OOM killer need not act, so its count is not asserted there.
        Assert.Equal("alive\n", (await victim.RunAsync("echo alive")).Stdout);
        await fixture.AssertHostUnchangedAsync();
    }

    private const string MemoryHog = "python3 -c \"b = b'x' * (1024 * 1024 * 1024); print('survived')\"";

    /// <summary>
    /// gVisor: the Sentry ends a process that grows past the limit in steps (GvisorRuntimeTests), but this single 1 GiB
    /// allocation against 256 MiB did not end that way (measured 2026-12-06 under a load average of 50: once the
    /// command neither finished nor failed within 120 s; once the whole sandbox ended within 60 s, its cgroup gone).
    /// What the tier promises, asserted here: the hog never completes; the sandbox either stays within its cgroup's
    /// memory limit or ends and is then unlisted and gone from the host; the host, the neighbour and the attacker are
    /// unharmed; and the victim can be destroyed, leaving nothing (a known limit of this tier, SECURITY.md).
    /// </summary>
    private async Task MemoryHogOnGvisorAsync(TestSandbox victim, string memory)
    {
        var limit = long.Parse(File.ReadAllText(Path.Combine(memory, "memory.limit_in_bytes")).Trim(), CultureInfo.InvariantCulture);
        string outcome;
        try
        {
            var hog = await victim.RunAsync(MemoryHog, timeout: TimeSpan.FromSeconds(60));
            Assert.DoesNotContain("survived", hog.Stdout, StringComparison.Ordinal);
            outcome = hog.ToString();
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or HttpRequestException)
        {
            outcome = "no answer within 60 s (" + ex.GetType().Name + ")";
        }
        if (await victim.ExistsAsync() && Directory.Exists(memory))
        {
            try
            {
                var peak = long.Parse(File.ReadAllText(Path.Combine(memory, "memory.max_usage_in_bytes")).Trim(), CultureInfo.InvariantCulture);
                output.WriteLine($"gVisor memory hog: {outcome}; the sandbox's host memory peaked at {peak >> 20} MiB of {limit >> 20} MiB");
                Assert.True(peak <= limit, $"the sandbox's host memory peaked at {peak}, over its limit {limit}");
            }
            catch (IOException)
            {
                output.WriteLine($"gVisor memory hog: {outcome}; the sandbox ended while it was measured");
            }
        }
        else
        {
            output.WriteLine($"gVisor memory hog: {outcome}; the sandbox ended");
        }
        Assert.Equal("ok\n", (await fixture.Attacker.RunAsync("echo ok")).Stdout);
        await fixture.AssertHostUnchangedAsync();
        await victim.DisposeAsync();
        for (var i = 0; i < 300 && (HostLeftovers.SandboxCgroup(fixture.Daemon.CgroupParent, victim.Id, "memory") is not null || await victim.ExistsAsync()); i++)
        {
            await Task.Delay(100);
        }
        Assert.Null(HostLeftovers.SandboxCgroup(fixture.Daemon.CgroupParent, victim.Id, "memory"));
        Assert.False(await victim.ExistsAsync(), "the victim is still listed after its destroy");
    }

    [Fact]
    public async Task Opening_files_stops_at_the_sandboxs_descriptor_limit()
    {
        await using var victim = await TestSandbox.CreateAsync(fixture.Daemon, fixture.Http);

        var flood = await victim.RunAsync("""
            python3 - <<'PY'
            import errno, os, resource
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            fds = []
            err = "none"
            try:
                while len(fds) <= hard:
                    fds.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as ex:
                err = errno.errorcode[ex.errno]
            print(err, len(fds), hard)
            PY
            """, timeout: TimeSpan.FromSeconds(120));

        // EMFILE (the process's own limit), never ENFILE (the host's file table); or the memory limit killed it first.
        var fields = flood.Stdout.Trim().Split(' ');
        if (flood.ExitCode == 0)
        {
            Assert.True(fields[0] == "EMFILE", "opening stopped with: " + flood);
            Assert.True(long.Parse(fields[1], CultureInfo.InvariantCulture) <= long.Parse(fields[2], CultureInfo.InvariantCulture));
        }
        else
        {
            Assert.DoesNotContain("ENFILE", flood.Stdout, StringComparison.Ordinal);
        }
        using (File.OpenRead(fixture.CanaryFile))
        {
            // the host can still open files
        }
        Assert.Equal("alive\n", (await victim.RunAsync("echo alive")).Stdout);
        await fixture.AssertHostUnchangedAsync();
    }

    [Fact]
    public async Task A_cpu_spin_leaves_the_neighbour_its_share()
    {
        await using var victim = await TestSandbox.CreateAsync(fixture.Daemon, fixture.Http, ""","cpuCount":1""");
        await using var neighbour = await TestSandbox.CreateAsync(fixture.Daemon, fixture.Http, ""","cpuCount":1""");
        const string measure = "python3 -c \"import time\nn = 0\nend = time.monotonic() + 3\nwhile time.monotonic() < end: n += 1\nprint(n)\"";

        var alone = long.Parse((await neighbour.RunAsync(measure)).Stdout.Trim(), CultureInfo.InvariantCulture);
        // Four spinning processes against the victim's one CPU of quota, ended by timeout whatever the test does.
        var spin = await victim.RunAsync("for i in 1 2 3 4; do (setsid timeout 20 python3 -c 'while True: pass' >/dev/null 2>&1 &); done; echo spinning");
        Assert.Equal("spinning\n", spin.Stdout);
        var contended = long.Parse((await neighbour.RunAsync(measure)).Stdout.Trim(), CultureInfo.InvariantCulture);

        // A generous ratio, not a timing bound: the machine is shared, but a spin that took the neighbour's share
        // would leave it a small fraction.
        output.WriteLine($"neighbour loop rate: {alone} alone, {contended} while the victim spun");
        Assert.True(contended * 8 >= alone, $"the neighbour's loop rate fell from {alone} to {contended} while the victim spun");
        var usage = HostLeftovers.SandboxCgroup(fixture.Daemon.CgroupParent, victim.Id, "cpu");
        Assert.NotNull(usage);
        Assert.Equal("100000", File.ReadAllText(Path.Combine(usage, "cpu.cfs_quota_us")).Trim());
        await fixture.AssertHostUnchangedAsync();
    }

    [Fact]
    public async Task An_output_flood_does_not_grow_the_daemons_memory_without_bound()
    {
        await using var victim = await TestSandbox.CreateAsync(fixture.Daemon, fixture.Http);
        const long floodBytes = 512L << 20;
        var before = fixture.Daemon.ResidentBytes();
        var peak = before;

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(240));
        using var response = await victim.StartAsync($"head -c {floodBytes} /dev/zero", "user", cts.Token);
        await using var body = await response.Content.ReadAsStreamAsync(cts.Token);
        // First a client that does not read for 5 s: the flood must wait, not pile up in the daemon.
        for (var i = 0; i < 10; i++)
        {
            await Task.Delay(500, cts.Token);
            peak = Math.Max(peak, fixture.Daemon.ResidentBytes());
        }
        // Then one that reads everything (discarding it), sampled as it goes.
        long received = 0;
        var buffer = new byte[1 << 16];
        var sampled = DateTime.UtcNow;
        int read;
        while ((read = await body.ReadAsync(buffer, cts.Token)) > 0)
        {
            received += read;
            if (DateTime.UtcNow - sampled > TimeSpan.FromMilliseconds(250))
            {
                peak = Math.Max(peak, fixture.Daemon.ResidentBytes());
                sampled = DateTime.UtcNow;
            }
        }

        // The stream carried the flood (base64 in JSON frames makes it larger), and the daemon held a bounded part.
        Assert.True(received >= floodBytes, $"received {received} bytes of a {floodBytes}-byte flood");
        var growth = peak - before;
        output.WriteLine($"paddockd RSS {before >> 20} MiB before, peak {peak >> 20} MiB during a {floodBytes >> 20} MiB flood ({received >> 20} MiB on the wire)");
        Assert.True(growth < floodBytes / 4, $"paddockd grew by {growth >> 20} MiB (from {before >> 20} MiB) during a {floodBytes >> 20} MiB flood");
        await fixture.AssertHostUnchangedAsync();
    }

    [Fact]
    public async Task Filling_the_writable_layer_stops_at_the_disk_limit()
    {
        await using var victim = await TestSandbox.CreateAsync(fixture.Daemon, fixture.Http, ""","diskSizeMB":128""");

        var fill = await victim.RunAsync("head -c 268435456 /dev/zero > /home/user/fill 2>&1; echo exit=$?; du -m /home/user/fill", timeout: TimeSpan.FromSeconds(120));

        Assert.DoesNotContain("exit=0", fill.Stdout, StringComparison.Ordinal);
        await fixture.AssertHostUnchangedAsync();
    }

    [Fact]
    public async Task Filling_the_writable_layer_with_inodes_stops_at_a_limit()
    {
        await using var victim = await TestSandbox.CreateAsync(fixture.Daemon, fixture.Http, ""","diskSizeMB":128""");

        var fill = await victim.RunAsync("python3 -c \"import os\nos.makedirs('/home/user/i', exist_ok=True)\nfor n in range(100000): open(f'/home/user/i/{n}', 'w').close()\nprint('all-created')\"", timeout: TimeSpan.FromSeconds(120));

        Assert.DoesNotContain("all-created", fill.Stdout, StringComparison.Ordinal);
        await fixture.AssertHostUnchangedAsync();
    }
}
