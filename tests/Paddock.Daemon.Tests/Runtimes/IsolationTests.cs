using System.Globalization;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Runtimes.Runc;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// What a sandbox's processes can and cannot do, checked from inside (commands run through the agent's
/// process.Process/Start over ConnectAsync) and from the host (/proc and the cgroup files).
/// </summary>
[Collection(RuncCollection.Name)]
public sealed class IsolationTests
{
    private readonly RuncFixture _fixture;

    public IsolationTests(RuncFixture fixture) => _fixture = fixture;

    [Fact]
    public async Task Host_processes_are_invisible_and_the_agent_is_pid_1()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

        var pids = await sandbox.RunAsync("ls /proc | grep -E '^[0-9]+$'");
        var init = await sandbox.RunAsync("tr '\\0' ' ' < /proc/1/cmdline");

        Assert.Equal(0, pids.ExitCode);
        var visible = pids.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToList();
        Assert.True(visible.Count < 10, "processes visible inside: " + string.Join(' ', visible));
        Assert.DoesNotContain(Environment.ProcessId, visible);
        Assert.StartsWith("/.paddock/lib/ld-linux-x86-64.so.2 --library-path /.paddock/lib /.paddock/paddock-agent", init.Stdout, StringComparison.Ordinal);
        Assert.Contains("/.paddock/paddock-agent", init.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Host_files_and_the_state_directory_are_invisible()
    {
        var marker = Path.Combine(TestEnvironment.StateRoot, "host-marker-" + Guid.NewGuid().ToString("N"));
        await File.WriteAllTextAsync(marker, "host only");
        try
        {
            await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

            var probe = await sandbox.RunAsync($"test -e {marker} && echo visible; test -e {TestEnvironment.StateRoot} && echo state-visible; test -e {sandbox.Layout.Directory} && echo bundle-visible; cat /etc/hostname; touch /.paddock/x 2>&1 || echo bundle-read-only");

            Assert.DoesNotContain("visible", probe.Stdout, StringComparison.Ordinal);
            Assert.Contains("sandbox\n", probe.Stdout, StringComparison.Ordinal);
            Assert.Contains("bundle-read-only", probe.Stdout, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(marker);
        }
    }

    [Fact]
    public async Task Root_inside_is_uid_100000_outside_and_user_is_101000()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

        var (rootPid, rootStream) = await AgentCalls.StartAsync(_fixture.Runtime, sandbox.Id, "/bin/sleep", ["300"], "root", TimeSpan.FromSeconds(30));
        using var _1 = rootStream;
        var (userPid, userStream) = await AgentCalls.StartAsync(_fixture.Runtime, sandbox.Id, "/bin/sleep", ["301"], "user", TimeSpan.FromSeconds(30));
        using var _2 = userStream;

        Assert.Equal("100000", HostStatus(sandbox.Id, rootPid)["Uid"].Split('\t')[0]);
        Assert.Equal("100000", HostStatus(sandbox.Id, rootPid)["Gid"].Split('\t')[0]);
        Assert.Equal("101000", HostStatus(sandbox.Id, userPid)["Uid"].Split('\t')[0]);
        // And the agent itself, the sandbox's init.
        Assert.Equal("100000", File.ReadAllLines($"/proc/{sandbox.Sandbox.HostPid}/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Split('\t')[1]);
    }

    [Fact]
    public async Task Root_inside_has_only_Dockers_default_capabilities_and_cannot_mount_or_unshare()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

        var status = await sandbox.RunAsync("grep -E '^(CapEff|CapBnd|CapInh|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status", user: "root");
        var mount = await sandbox.RunAsync("mkdir -p /tmp/m && mount -t tmpfs none /tmp/m", user: "root");
        var unshare = await sandbox.RunAsync("unshare --user --map-root-user true", user: "root");
        var sudo = await sandbox.RunAsync("sudo -n id -u", user: "user");

        var fields = status.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(':', 2))
            .ToDictionary(p => p[0], p => p[1].Trim());
        // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
        const ulong dockerDefault = 0xa80425fb;
        const ulong capSysAdmin = 1UL << 21;
        var effective = ulong.Parse(fields["CapEff"], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        Assert.Equal(dockerDefault, effective);
        Assert.Equal(dockerDefault, ulong.Parse(fields["CapBnd"], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
        Assert.Equal(0UL, effective & capSysAdmin);
        Assert.Equal(0UL, ulong.Parse(fields["CapInh"], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
        // no_new_privs is off by default (issue 18): the default user's sudo makes it the sandbox's root, as in E2B.
        Assert.Equal("0", fields["NoNewPrivs"]);
        Assert.Equal("2", fields["Seccomp"]); // filter mode
        Assert.NotEqual(0, mount.ExitCode);
        Assert.NotEqual(0, unshare.ExitCode);
        Assert.Equal(0, sudo.ExitCode);
        Assert.Equal("0", sudo.Stdout.Trim());
    }

    [Fact]
    public async Task Root_reached_through_sudo_is_the_same_confined_root()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

        var status = await sandbox.RunAsync("sudo -n grep -E '^(Uid|CapEff|CapBnd|Seccomp):' /proc/self/status", user: "user");
        var mount = await sandbox.RunAsync("mkdir -p /tmp/m && sudo -n mount -t tmpfs none /tmp/m", user: "user");
        var unshare = await sandbox.RunAsync("sudo -n unshare --user --map-root-user true", user: "user");

        Assert.Equal(0, status.ExitCode);
        var fields = status.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(':', 2))
            .ToDictionary(p => p[0], p => p[1].Trim());
        const string dockerDefault = "00000000a80425fb";
        Assert.StartsWith("0\t0\t0\t0", fields["Uid"], StringComparison.Ordinal);
        Assert.Equal(dockerDefault, fields["CapEff"]);
        Assert.Equal(dockerDefault, fields["CapBnd"]);
        Assert.Equal("2", fields["Seccomp"]);
        Assert.NotEqual(0, mount.ExitCode);
        Assert.NotEqual(0, unshare.ExitCode);
    }

    [Fact]
    public async Task A_fork_flood_stops_at_pids_max_and_the_host_is_fine_afterwards()
    {
        const int maxPids = 64;
        var spec = _fixture.Spec(_fixture.Base, new ResourceLimits(CpuCount: 1, MemoryBytes: 512L << 20, MaxPids: maxPids, DiskBytes: 1L << 30));
        var sandboxDir = LegacyCgroups.Discover(_fixture.Options.CgroupParent).Directory(spec.SandboxId, "pids")!;
        // The sandbox's processes are counted in S/work (PidReserve): the limit there, plus the agent's spawn thread.
        var workDir = Path.Combine(sandboxDir, PidReserve.WorkCgroup);
        await using (var sandbox = await _fixture.StartAsync(spec))
        {
            Assert.Equal((maxPids + 1).ToString(CultureInfo.InvariantCulture), File.ReadAllText(Path.Combine(workDir, "pids.max")).Trim());

            // Four times the limit of short sleeps; the shell gives up at the first fork that fails.
            const string Flood = "i=0; while [ $i -lt 256 ]; do sleep 3 & i=$((i+1)); done; echo all-forked";
            var flood = await sandbox.RunAsync(Flood, timeout: TimeSpan.FromSeconds(60));
            Assert.DoesNotContain("all-forked", flood.Stdout, StringComparison.Ordinal);

            var events = File.ReadAllText(Path.Combine(workDir, "pids.events"));
            Assert.True(int.Parse(events.Split(' ')[1], CultureInfo.InvariantCulture) > 0, "pids.events: " + events);
            Assert.True(long.Parse(File.ReadAllText(Path.Combine(workDir, "pids.current")), CultureInfo.InvariantCulture) <= maxPids + 1);
            // The agent's reserve was never touched: the flood could not reach S's own limit.
            var sandboxEvents = File.ReadAllText(Path.Combine(sandboxDir, "pids.events"));
            Assert.Equal("max 0", sandboxEvents.Trim());

            // The agent survived the flood: it answers while the sleeps still hold the pids (a start fails, with an
            // error, not a dropped stream), and runs commands once they are gone.
            var during = await AgentCalls.Client(_fixture.Runtime, sandbox.Id, TimeSpan.FromSeconds(30)).GetAsync("/health");
            Assert.True(during.IsSuccessStatusCode, "GET /health during the flood: " + during.StatusCode);
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (true)
            {
                var echo = await sandbox.RunAsync("echo ok", timeout: TimeSpan.FromSeconds(10)).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : null, TaskScheduler.Default);
                if (echo is not null || DateTime.UtcNow >= deadline)
                {
                    Assert.Equal("ok\n", echo?.Stdout);
                    break;
                }
                await Task.Delay(500);
            }
        }

        Assert.False(Directory.Exists(sandboxDir));
        var host = await ExternalCommand.RunAsync("/bin/sh", ["-c", "for i in 1 2 3 4 5 6 7 8; do /bin/true & done; wait; echo ok"], TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
        Assert.Equal("ok", host.StandardOutput.Trim());
    }

    [Fact]
    public async Task The_agents_spawn_thread_alone_is_in_the_work_cgroup_and_a_flood_there_leaves_the_agent_working()
    {
        const int maxPids = 32;
        var spec = _fixture.Spec(_fixture.Base, new ResourceLimits(CpuCount: 1, MemoryBytes: 512L << 20, MaxPids: maxPids, DiskBytes: 1L << 30));
        var sandboxDir = LegacyCgroups.Discover(_fixture.Options.CgroupParent).Directory(spec.SandboxId, "pids")!;
        var workDir = Path.Combine(sandboxDir, PidReserve.WorkCgroup);
        await using var sandbox = await _fixture.StartAsync(spec);
        var agent = sandbox.Sandbox.HostPid;

        Assert.Equal(maxPids + 1L + PidReserve.AgentThreads, Cgroups.ReadLong(Path.Combine(sandboxDir, "pids.max")));
        Assert.Equal(maxPids + 1L, Cgroups.ReadLong(Path.Combine(workDir, "pids.max")));
        var threads = Directory.EnumerateDirectories($"/proc/{agent}/task")
            .ToDictionary(t => int.Parse(Path.GetFileName(t), CultureInfo.InvariantCulture), t => File.ReadAllText(Path.Combine(t, "comm")).TrimEnd('\n'));
        var spawner = Assert.Single(threads, t => t.Value == PidReserve.SpawnThreadName).Key;
        var inWork = Tasks(workDir);
        var inSandbox = Tasks(sandboxDir);
        Assert.Equal([spawner], inWork);
        Assert.True(threads.Count > 5, "agent threads: " + string.Join(", ", threads.Values));
        Assert.All(threads.Keys.Where(t => t != spawner), t => Assert.Contains(t, inSandbox));

        // Commands start in S/work: the shell that reports its own cgroup is there.
        var own = await sandbox.RunAsync("grep pids: /proc/self/cgroup");
        Assert.EndsWith($"/{spec.SandboxId}/{PidReserve.WorkCgroup}\n", own.Stdout, StringComparison.Ordinal);

        // A flood that holds every pid of S/work and keeps holding it: a shell gives up at its first failed fork,
        // which frees its own pid, so the flood is a Python loop that retries until it has 128 children (which it
        // never gets) or 120 s have passed; its children sleep until killed.
        const string Flood = """
            import os, time
            end, n = time.monotonic() + 120, 0
            while n < 128 and time.monotonic() < end:
                try:
                    if os.fork() == 0:
                        time.sleep(600)
                        os._exit(0)
                    n += 1
                except OSError:
                    time.sleep(0.01)
            """;
        var (_, floodStream) = await AgentCalls.StartAsync(_fixture.Runtime, sandbox.Id, "/usr/bin/python3", ["-c", Flood], null, TimeSpan.FromSeconds(30));
        try
        {
            var full = false;
            for (var i = 0; i < 300 && !full; i++)
            {
                full = Cgroups.ReadLong(Path.Combine(workDir, "pids.current")) >= maxPids + 1;
                if (!full)
                {
                    await Task.Delay(100);
                }
            }
            Assert.True(full, "S/work never filled: pids.current " + File.ReadAllText(Path.Combine(workDir, "pids.current")));

            // While it holds: the agent still answers, and has pids to spare for its own threads.
            using (var http = AgentCalls.Client(_fixture.Runtime, sandbox.Id, TimeSpan.FromSeconds(30)))
            {
                var health = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => http.GetAsync("/health")));
                Assert.All(health, r => Assert.True(r.IsSuccessStatusCode, "GET /health: " + r.StatusCode));
            }
            Assert.True(Cgroups.ReadLong(Path.Combine(sandboxDir, "pids.current")) < Cgroups.ReadLong(Path.Combine(sandboxDir, "pids.max")));
            // A command cannot start now, and says so instead of killing the agent.
            var refused = await Record.ExceptionAsync(() => sandbox.RunAsync("echo never", timeout: TimeSpan.FromSeconds(30)));
            Assert.NotNull(refused);
        }
        finally
        {
            floodStream.Dispose();
            // The flood's processes from the host; the agent shows in S/work's cgroup.procs too (its spawn thread).
            foreach (var pid in Cgroups.Pids(workDir).Where(p => p != agent))
            {
                Signals.Send(pid, Signals.SIGKILL);
            }
        }
        var emptied = false;
        for (var i = 0; i < 300 && !emptied; i++)
        {
            emptied = Cgroups.ReadLong(Path.Combine(workDir, "pids.current")) == 1;
            if (!emptied)
            {
                await Task.Delay(100);
            }
        }
        Assert.True(emptied, "S/work still holds " + File.ReadAllText(Path.Combine(workDir, "pids.current")) + " pids");

        // Right after the flood: a command runs, first time.
        Assert.Equal("ok\n", (await sandbox.RunAsync("echo ok")).Stdout);
        Assert.Equal("max 0", File.ReadAllText(Path.Combine(sandboxDir, "pids.events")).Trim());
    }

    private static List<int> Tasks(string cgroup) =>
        File.ReadAllLines(Path.Combine(cgroup, "tasks")).Select(l => int.Parse(l, CultureInfo.InvariantCulture)).ToList();

    [Fact]
    public async Task A_memory_hog_is_oom_killed_inside_the_limit_and_the_agent_survives()
    {
        const long limit = 256L << 20;
        var spec = _fixture.Spec(_fixture.Base, new ResourceLimits(CpuCount: 1, MemoryBytes: limit, MaxPids: 256, DiskBytes: 1L << 30));
        await using var sandbox = await _fixture.StartAsync(spec);
        var memoryDir = LegacyCgroups.Discover(_fixture.Options.CgroupParent).Directory(sandbox.Id, "memory")!;

        // 1 GiB of real (written) bytes, four times the limit.
        var hog = await sandbox.RunAsync("python3 -c \"b = b'x' * (1024 * 1024 * 1024); print('survived')\"", timeout: TimeSpan.FromSeconds(120));

        Assert.DoesNotContain("survived", hog.Stdout, StringComparison.Ordinal);
        Assert.NotEqual(0, hog.ExitCode);
        var oom = Cgroups.ReadKeyValues(Path.Combine(memoryDir, "memory.oom_control"));
        Assert.True(oom["oom_kill"] >= 1, "memory.oom_control: " + string.Join(", ", oom));
        Assert.True(Cgroups.ReadLong(Path.Combine(memoryDir, "memory.max_usage_in_bytes")) <= limit);
        var after = await sandbox.RunAsync("echo alive");
        Assert.Equal("alive\n", after.Stdout);
    }

    [Fact]
    public async Task Usage_reports_cpu_memory_and_the_writable_layer()
    {
        var spec = _fixture.Spec(_fixture.Base, new ResourceLimits(CpuCount: 1, MemoryBytes: 384L << 20, MaxPids: 256, DiskBytes: 2L << 30));
        await using var sandbox = await _fixture.StartAsync(spec);

        var write = await sandbox.RunAsync("head -c 20971520 /dev/urandom > $HOME/blob && sync && echo written");
        Assert.Equal("written\n", write.Stdout);
        var baseline = await _fixture.Runtime.GetUsageAsync(sandbox.Id, TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
        var busy = await sandbox.RunAsync("end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do :; done; echo done");
        var usage = await _fixture.Runtime.GetUsageAsync(sandbox.Id, TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));

        Assert.Equal("done\n", busy.Stdout);
        Assert.NotNull(baseline);
        Assert.NotNull(usage);
        Assert.Equal(1, usage.CpuCount);
        Assert.True(usage.CpuUsedPercent > 0, $"cpu {usage.CpuUsedPercent}%");
        Assert.Equal(384L << 20, usage.MemoryTotalBytes);
        Assert.InRange(usage.MemoryUsedBytes, 1, 384L << 20);
        Assert.True(usage.DiskUsedBytes >= 20L << 20, $"disk {usage.DiskUsedBytes}");
        Assert.Equal(2L << 30, usage.DiskTotalBytes);
    }

    [Fact]
    public async Task Sandbox_variables_reach_commands_but_not_the_agents_own_loader()
    {
        var spec = _fixture.Spec(_fixture.Base) with
        {
            // LD_PRELOAD of a missing library would break the agent's start if it reached the agent's environment.
            EnvVars = new Dictionary<string, string> { ["GREETING"] = "hello sandbox", ["LD_PRELOAD"] = "/nonexistent.so" },
        };
        await using var sandbox = await _fixture.StartAsync(spec);

        var output = await sandbox.RunAsync("echo \"$GREETING\"; tr '\\0' '\\n' < /proc/1/environ | grep -c '^LD_PRELOAD=' || true", user: "root");

        Assert.Equal("hello sandbox\n0\n", output.Stdout);
    }

    /// <summary>/proc/PID/status on the host of the sandbox process whose pid inside is <paramref name="pidInside"/>.</summary>
    private Dictionary<string, string> HostStatus(string sandboxId, uint pidInside)
    {
        var pidsDir = LegacyCgroups.Discover(_fixture.Options.CgroupParent).Directory(sandboxId, "pids")!;
        // The agent is in S, the processes it starts in S/work (PidReserve).
        foreach (var pid in Cgroups.Pids(pidsDir).Concat(Cgroups.Pids(Path.Combine(pidsDir, PidReserve.WorkCgroup))).Distinct())
        {
            var status = File.ReadAllLines($"/proc/{pid}/status")
                .Select(l => l.Split(':', 2))
                .Where(p => p.Length == 2)
                .ToDictionary(p => p[0], p => p[1].Trim());
            // NSpid: the pid in each namespace from the host's down to the sandbox's.
            if (status.TryGetValue("NSpid", out var nspid) && nspid.Split('\t').Last() == pidInside.ToString(CultureInfo.InvariantCulture))
            {
                return status;
            }
        }
        throw new InvalidOperationException($"no host process for pid {pidInside} of sandbox {sandboxId}");
    }
}
