using System.Net.Sockets;
using System.Text;
using Paddock.Daemon.Native;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>The gVisor tier with real runsc, the real agent and the real templates.</summary>
[Collection(GvisorCollection.Name)]
public sealed class GvisorRuntimeTests(GvisorFixture fixture)
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(120);

    [GvisorFact]
    public async Task A_base_sandbox_runs_commands_on_the_Sentry_kernel()
    {
        await using var sandbox = await fixture.StartAsync(fixture.Spec(fixture.Base));

        // gVisor's kernel reports itself as Linux 4.4.0, whatever the host's (6.18 here): proof the Sentry runs it.
        var uname = await sandbox.RunAsync("uname -r; ls / | head -n 3; stat -c %U /home/user; id -un");
        Assert.True(uname.ExitCode == 0, uname.ToString());
        var lines = uname.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("4.4.0", lines[0]);
        Assert.NotEqual(Environment.OSVersion.Version.ToString(3), lines[0]);
        Assert.Equal("user", lines[^2]);
        Assert.Equal("user", lines[^1]);
        var dmesg = await sandbox.RunAsync("dmesg | head -n 1", user: "root");
        Assert.Contains("Starting gVisor", dmesg.Stdout, StringComparison.Ordinal);
    }

    [GvisorFact]
    public async Task The_agent_runs_in_a_template_without_any_libc_and_files_persist_in_the_upper_layer()
    {
        await using var sandbox = await fixture.StartAsync(fixture.Spec(fixture.Busybox));

        var write = await sandbox.RunAsync("echo written-inside > /root/note && cat /root/note");
        Assert.Equal("written-inside\n", write.Stdout);
        // The Sentry writes through the gofer to the host overlay (--overlay2=none): the file is in the writable layer.
        var layout = new SandboxLayout(fixture.Options, sandbox.Id);
        Assert.Equal("written-inside\n", await File.ReadAllTextAsync(Path.Combine(layout.Upper, "root/note")));
    }

    [GvisorFact]
    public async Task ConnectAsync_reaches_a_user_port_and_names_a_closed_one_and_a_missing_sandbox()
    {
        await using var sandbox = await fixture.StartAsync(fixture.Spec(fixture.Base));
        var (_, server) = await AgentCalls.StartAsync(fixture.Runtime, sandbox.Id, "/usr/bin/python3", ["-m", "http.server", "8000", "--bind", "0.0.0.0", "--directory", "/etc"], "user", Long);
        using (server)
        {
            var body = await PollAsync(async () =>
            {
                await using var stream = await fixture.Runtime.ConnectAsync(sandbox.Id, 8000, TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
                await stream.WriteAsync("GET /hostname HTTP/1.0\r\n\r\n"u8.ToArray(), TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
                using var reader = new StreamReader(stream, Encoding.ASCII);
                return await reader.ReadToEndAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
            });
            Assert.StartsWith("HTTP/1.0 200", body, StringComparison.Ordinal);
            Assert.EndsWith("sandbox\n", body, StringComparison.Ordinal);
        }
        await Assert.ThrowsAsync<SandboxPortUnreachableException>(async () => await fixture.Runtime.ConnectAsync(sandbox.Id, 8001, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));
        await Assert.ThrowsAsync<SandboxNotFoundException>(async () => await fixture.Runtime.ConnectAsync("g-missing", 8000, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));
    }

    [GvisorFact]
    public async Task Destroy_leaves_nothing_on_the_host_and_is_idempotent()
    {
        var before = fixture.Footprint();
        var sandbox = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Base), TestEnvironment.Timeout(Long));
        var during = fixture.Footprint();
        Assert.True(during.Processes >= 2, $"the Sentry and the gofer are in the sandbox's cgroups: {during}");
        Assert.Equal(before.Links + 1, during.Links);
        Assert.Equal(before.NetnsFiles + 1, during.NetnsFiles);
        // The host tasks of the sandbox (Sentry, gofer, stubs) are bounded: its pid limit plus the tier's allowance.
        var pidsMax = await File.ReadAllTextAsync($"/sys/fs/cgroup/pids/{fixture.Options.CgroupParent}/{sandbox.SandboxId}/pids.max");
        Assert.Equal((256 + fixture.Options.HostTaskAllowance).ToString(System.Globalization.CultureInfo.InvariantCulture), pidsMax.Trim());

        await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));

        Assert.Equal(before, fixture.Footprint());
        Assert.False(ProcessStat.IsRunning(sandbox.HostPid!.Value));
        Assert.Null(await fixture.Runtime.GetUsageAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long)));
    }

    [GvisorFact]
    public async Task Repeated_create_and_destroy_leaks_nothing()
    {
        // Its own variable: a gVisor cycle costs several times a runc one (see the report in ARCHITECTURE.md).
        var cycles = int.TryParse(Environment.GetEnvironmentVariable("PADDOCK_GVISOR_TEST_CYCLES"), out var n) && n > 0 ? n : 20;
        var before = fixture.Footprint();
        for (var i = 0; i < cycles; i++)
        {
            var sandbox = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Busybox), TestEnvironment.Timeout(Long));
            try
            {
                await using var stream = await fixture.Runtime.ConnectAsync(sandbox.SandboxId, AgentBundle.AgentPort, TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
                Assert.True(await AgentProbe.IsHealthyAsync(stream, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));
            }
            finally
            {
                await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
            }
        }
        Assert.Equal(before, fixture.Footprint());
        Assert.Empty(await fixture.Runtime.ListAsync(TestEnvironment.Timeout(Long)));
    }

    [GvisorFact]
    public async Task A_new_runtime_instance_lists_and_reaches_a_running_sandbox()
    {
        await using var sandbox = await fixture.StartAsync(fixture.Spec(fixture.Busybox));

        using var restarted = fixture.NewRuntime();
        var listed = Assert.Single(await restarted.ListAsync(TestEnvironment.Timeout(Long)), s => s.SandboxId == sandbox.Id);
        Assert.Equal(sandbox.Sandbox.HostPid, listed.HostPid);
        Assert.Equal(sandbox.Sandbox.StartedAt, listed.StartedAt);
        await using var stream = await restarted.ConnectAsync(sandbox.Id, AgentBundle.AgentPort, TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
        Assert.True(await AgentProbe.IsHealthyAsync(stream, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));
        Assert.Empty(await restarted.CleanupLeftoversAsync(TestEnvironment.Timeout(Long)));
    }

    [GvisorFact]
    public async Task Leftovers_of_a_killed_sandbox_are_found_and_removed_by_a_new_instance()
    {
        var before = fixture.Footprint();
        var sandbox = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Busybox), TestEnvironment.Timeout(Long));
        try
        {
            // The Sentry dies behind the runtime's back, as in a crash of the host's processes.
            Assert.Equal(0, Signals.Send(sandbox.HostPid!.Value, Signals.SIGKILL));
            using var restarted = fixture.NewRuntime();
            for (var i = 0; i < 100 && (await restarted.ListAsync(TestEnvironment.Timeout(Long))).Any(s => s.SandboxId == sandbox.SandboxId); i++)
            {
                await Task.Delay(100);
            }
            var removed = await restarted.CleanupLeftoversAsync(TestEnvironment.Timeout(Long));

            Assert.Contains(sandbox.SandboxId, removed);
            Assert.Equal(before, fixture.Footprint());
        }
        finally
        {
            await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
    }

    [GvisorFact]
    public async Task KillProcesses_ends_the_Sentry_and_destroy_removes_the_rest()
    {
        var before = fixture.Footprint();
        var sandbox = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Busybox), TestEnvironment.Timeout(Long));
        try
        {
            Assert.True(await fixture.Runtime.KillProcessesAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long)));
            Assert.False(ProcessStat.IsRunning(sandbox.HostPid!.Value));
            Assert.Equal(0, fixture.Footprint().Processes);
            Assert.DoesNotContain(await fixture.Runtime.ListAsync(TestEnvironment.Timeout(Long)), s => s.SandboxId == sandbox.SandboxId);
        }
        finally
        {
            await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
        Assert.Equal(before, fixture.Footprint());
    }

    [GvisorFact]
    public async Task Freezing_stops_the_Sentry_and_kill_and_destroy_work_on_a_frozen_sandbox()
    {
        var before = fixture.Footprint();
        var sandbox = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Base), TestEnvironment.Timeout(Long));
        try
        {
            // runsc ps: the agent alone, then with a process of the user's, then alone again.
            Assert.True(await fixture.Runtime.IsOnlyAgentRunningAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long)));
            var user = new GvisorLease(fixture.Runtime, sandbox);
            Assert.Equal(0, (await user.RunAsync("nohup sleep 600 >/dev/null 2>&1 &")).ExitCode);
            Assert.False(await fixture.Runtime.IsOnlyAgentRunningAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long)));
            Assert.Equal(0, (await user.RunAsync("kill $(pidof sleep); true")).ExitCode);
            for (var i = 0; i < 50 && !await fixture.Runtime.IsOnlyAgentRunningAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long)); i++)
            {
                await Task.Delay(100);
            }
            Assert.True(await fixture.Runtime.IsOnlyAgentRunningAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long)));
            Assert.False(await fixture.Runtime.IsOnlyAgentRunningAsync("not-a-sandbox", TestEnvironment.Timeout(Long)));
            Assert.True(await fixture.Runtime.SetFrozenAsync(sandbox.SandboxId, true, TestEnvironment.Timeout(Long)));
            var state = await File.ReadAllTextAsync($"/sys/fs/cgroup/freezer/{fixture.Options.CgroupParent}/{sandbox.SandboxId}/freezer.state");
            Assert.Equal("FROZEN", state.Trim());
            await fixture.Runtime.SetFrozenAsync(sandbox.SandboxId, false, TestEnvironment.Timeout(Long));
            var lease = new GvisorLease(fixture.Runtime, sandbox);
            Assert.Equal("thawed\n", (await lease.RunAsync("echo thawed")).Stdout);

            Assert.True(await fixture.Runtime.SetFrozenAsync(sandbox.SandboxId, true, TestEnvironment.Timeout(Long)));
            Assert.True(await fixture.Runtime.KillProcessesAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long)));
            Assert.False(ProcessStat.IsRunning(sandbox.HostPid!.Value));
        }
        finally
        {
            await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
        Assert.Equal(before, fixture.Footprint());
    }

    [GvisorFact]
    public async Task The_disk_limit_fails_writes_beyond_it()
    {
        await using var sandbox = await fixture.StartAsync(fixture.Spec(fixture.Base, new ResourceLimits(1, 512L << 20, 256, 32L << 20)));

        var fill = await sandbox.RunAsync("dd if=/dev/zero of=/home/user/big bs=1M count=64 2>&1; echo rc=$?");
        Assert.Contains("No space left on device", fill.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("rc=0", fill.Stdout, StringComparison.Ordinal);
        var usage = await fixture.Runtime.GetUsageAsync(sandbox.Id, TestEnvironment.Timeout(Long));
        Assert.NotNull(usage);
        Assert.InRange(usage.DiskUsedBytes, 16L << 20, 40L << 20);
        Assert.Equal(32L << 20, usage.DiskTotalBytes);
    }

    [GvisorFact]
    public async Task The_memory_limit_is_the_Sentrys_memory_and_ends_the_process_that_exceeds_it()
    {
        await using var sandbox = await fixture.StartAsync(fixture.Spec(fixture.Base, new ResourceLimits(1, 256L << 20, 256, 1L << 30)));

        // 40 x 16 MiB = 640 MiB against a 256 MiB limit.
        var grow = await sandbox.RunAsync("python3 -c 'b=[]\nfor i in range(40): b.append(bytearray(16<<20)); print(i, flush=True)' > /tmp/grown; echo rc=$?; tail -n 1 /tmp/grown; grep MemTotal /proc/meminfo");
        var lines = grow.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEqual("rc=0", lines[0]);
        Assert.InRange(int.Parse(lines[1], System.Globalization.CultureInfo.InvariantCulture), 0, 16);
        // The Sentry reports the limit as the sandbox's memory, and the sandbox goes on after the kill.
        Assert.Equal("MemTotal:         262144 kB", lines[2]);
        Assert.Equal("alive\n", (await sandbox.RunAsync("echo alive")).Stdout);
    }

    [GvisorFact]
    public async Task A_filesystem_snapshot_holds_what_the_sandbox_wrote_and_deleted()
    {
        await using var sandbox = await fixture.StartAsync(fixture.Spec(fixture.Base));
        var write = await sandbox.RunAsync("echo snap > /tmp/kept && rm /etc/issue", user: "root");
        Assert.True(write.ExitCode == 0, write.ToString());
        var destination = Path.Combine(fixture.Options.StateDirectory, "snapshot-" + sandbox.Id);
        try
        {
            var bytes = await fixture.Runtime.SnapshotFilesystemAsync(sandbox.Id, destination, TestEnvironment.Timeout(Long));

            Assert.True(bytes > 0);
            Assert.Equal("snap\n", await File.ReadAllTextAsync(Path.Combine(destination, "tmp/kept")));
            // A deletion is an overlayfs whiteout: a 0/0 character device.
            var whiteout = Files.Stat(Path.Combine(destination, "etc/issue"));
            Assert.Equal(0x2000u, whiteout.Mode & 0xF000u);
            // The sandbox runs on after the pause.
            Assert.Equal("snap\n", (await sandbox.RunAsync("cat /tmp/kept")).Stdout);
        }
        finally
        {
            if (Directory.Exists(destination))
            {
                Directory.Delete(destination, recursive: true);
            }
        }
    }

    [GvisorFact]
    public async Task Egress_follows_the_policy_and_its_updates()
    {
        var outside = await fixture.OutsideAsync();
        await using var open = await fixture.StartAsync(fixture.Spec(fixture.Base, egress: EgressPolicy.AllowAll));
        await using var closed = await fixture.StartAsync(fixture.Spec(fixture.Base, egress: EgressPolicy.DenyAll));

        var reached = await FetchAsync(open, outside.Address);
        Assert.True(reached.Contains($"outside 8080 {outside.Address}", StringComparison.Ordinal), reached);
        Assert.StartsWith("ERR", await FetchAsync(closed, outside.Address), StringComparison.Ordinal);

        await fixture.Runtime.UpdateNetworkAsync(open.Id, EgressPolicy.DenyAll, TestEnvironment.Timeout(Long));
        await fixture.Runtime.UpdateNetworkAsync(closed.Id, EgressPolicy.AllowAll, TestEnvironment.Timeout(Long));

        Assert.StartsWith("ERR", await FetchAsync(open, outside.Address), StringComparison.Ordinal);
        Assert.Contains($"outside 8080 {outside.Address}", await FetchAsync(closed, outside.Address), StringComparison.Ordinal);
        // The host end of the link is the host: closed to the sandbox under every policy.
        var link = fixture.Runtime.Network.Find(closed.Id)!;
        var host = await FetchAsync(closed, link.HostAddress.ToString());
        Assert.True(host.StartsWith("ERR", StringComparison.Ordinal), host);
    }

    [GvisorFact]
    public async Task Outbound_connections_are_seen_on_the_host_with_their_verdict_and_bytes_until_the_kill()
    {
        var outside = await fixture.OutsideAsync();
        var policy = new EgressPolicy { AllowOut = [IpNetwork.Parse(outside.Address + "/32")], DenyOut = [IpNetwork.Parse("0.0.0.0/0")] };
        string id;
        await using (var sandbox = await fixture.StartAsync(fixture.Spec(fixture.Base, egress: policy)))
        {
            id = sandbox.Id;
            Assert.Contains($"outside 8080 {outside.Address}", await FetchAsync(sandbox, outside.Address), StringComparison.Ordinal);
            Assert.StartsWith("ERR", await FetchAsync(sandbox, outside.Other), StringComparison.Ordinal);
            await WaitForConnectionAsync(id, e => e.Phase == ConnectionPhase.Attempt && e.Verdict == "allowed" && e.Destination.ToString() == outside.Address && e.Port == 8080 && e.Protocol == "tcp");
            await WaitForConnectionAsync(id, e => e.Phase == ConnectionPhase.Attempt && e.Verdict == "denied" && e.Destination.ToString() == outside.Other && e.Port == 8080);
        }
        // The kill ended the flow (it was in TIME_WAIT): reported with what the server sent.
        var end = await WaitForConnectionAsync(id, e => e.Phase == ConnectionPhase.End && e.Destination.ToString() == outside.Address && e.Port == 8080);
        Assert.True(end.BytesIn > 40 && end.BytesOut > 40, $"in {end.BytesIn}, out {end.BytesOut}");
    }

    private async Task<ConnectionEvent> WaitForConnectionAsync(string sandboxId, Func<ConnectionEvent, bool> match)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (fixture.Connections.Of(sandboxId).FirstOrDefault(match) is { } found)
            {
                return found;
            }
            await Task.Delay(200);
        }
        Assert.Fail("not observed; seen: " + string.Join("\n", fixture.Connections.Of(sandboxId)));
        return null!;
    }

    /// <summary>
    /// What the sandbox gets from <paramref name="address"/>:8080 on one line: "OK" and the whole answer, or "ERR"
    /// and the error (refused, or timed out after 3 s).
    /// </summary>
    private static async Task<string> FetchAsync(GvisorLease sandbox, string address)
    {
        const string Probe = """
            import socket, sys
            try:
                s = socket.create_connection((sys.argv[1], 8080), timeout=3)
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                print("OK", repr(data))
            except OSError as e:
                print("ERR", repr(e))
            """;
        var output = await AgentCalls.RunAsync(sandbox.Runtime, sandbox.Id, "/usr/bin/python3", ["-c", Probe, address], "user", TimeSpan.FromSeconds(60));
        Assert.True(output.ExitCode == 0, output.ToString());
        return output.Stdout.Trim();
    }

    [GvisorFact]
    public async Task The_agents_stdout_is_a_bounded_pipe_that_survives_a_lost_reader_and_a_new_runtime()
    {
        await using var sandbox = await fixture.StartAsync(fixture.Spec(fixture.Busybox));
        var layout = new SandboxLayout(fixture.Options, sandbox.Id);
        Assert.True(fixture.Runtime.Logs.IsOpen(sandbox.Id));

        // Root reaches the agent's stdout through the Sentry's /proc (issue 14): it is the FIFO, drained into agent.log.
        var before = await sandbox.RunAsync("echo paddock-before > /proc/1/fd/1 && echo sent", user: "root");
        Assert.Equal("sent\n", before.Stdout);
        await WaitForLogAsync(fixture.Runtime, layout, "paddock-before");

        // The daemon goes away (its reader closes): a write fails at once (EPIPE, or SIGPIPE for a writer that does not
        // ignore it: status 141); it neither blocks nor lands anywhere.
        fixture.Runtime.Logs.Close(sandbox.Id);
        var during = await sandbox.RunAsync("(echo paddock-during > /proc/1/fd/1); echo status $?", user: "root");
        Assert.Matches("status (1|141)\n$", during.Stdout);
        await using (var stream = await fixture.Runtime.ConnectAsync(sandbox.Id, AgentBundle.AgentPort, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))))
        {
            Assert.True(await AgentProbe.IsHealthyAsync(stream, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));
        }

        // A new runtime instance (a restarted daemon) lists the sandbox and drains the same pipe again.
        using (var restarted = fixture.NewRuntime())
        {
            Assert.Contains(await restarted.ListAsync(TestEnvironment.Timeout(Long)), s => s.SandboxId == sandbox.Id);
            Assert.True(restarted.Logs.IsOpen(sandbox.Id));
            var after = await sandbox.RunAsync("echo paddock-after > /proc/1/fd/1 && echo sent", user: "root");
            Assert.Equal("sent\n", after.Stdout);
            await WaitForLogAsync(restarted, layout, "paddock-after");
            restarted.Logs.Close(sandbox.Id);
        }
        Assert.DoesNotContain("paddock-during", await File.ReadAllTextAsync(layout.LogFile), StringComparison.Ordinal);
    }

    private static async Task WaitForLogAsync(Paddock.Daemon.Runtimes.Gvisor.GvisorRuntime runtime, SandboxLayout layout, string text)
    {
        for (var i = 0; i < 50; i++)
        {
            runtime.Logs.Flush(layout.SandboxId);
            if (File.Exists(layout.LogFile) && (await File.ReadAllTextAsync(layout.LogFile)).Contains(text, StringComparison.Ordinal))
            {
                return;
            }
            await Task.Delay(100);
        }
        Assert.Fail($"agent.log never showed '{text}': {layout.LogTail()}");
    }

    private static async Task<T> PollAsync<T>(Func<Task<T>> attempt)
    {
        for (var i = 0; ; i++)
        {
            try
            {
                return await attempt();
            }
            catch (Exception ex) when (i < 50 && ex is SandboxPortUnreachableException or IOException or SocketException)
            {
                await Task.Delay(100);
            }
        }
    }
}

