using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Runtimes.Runc;

namespace Paddock.Daemon.Tests.Runtimes;

[Collection(RuncCollection.Name)]
public sealed class SandboxLifecycleTests
{
    private readonly RuncFixture _fixture;

    public SandboxLifecycleTests(RuncFixture fixture) => _fixture = fixture;

    [Fact]
    public async Task A_started_sandbox_answers_health_through_ConnectAsync()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

        await using var stream = await _fixture.Runtime.ConnectAsync(sandbox.Id, AgentBundle.AgentPort, TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
        Assert.True(await AgentProbe.IsHealthyAsync(stream, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));
        Assert.NotNull(sandbox.Sandbox.HostPid);
        Assert.True(Directory.Exists($"/proc/{sandbox.Sandbox.HostPid}"));
    }

    [Fact]
    public async Task The_agent_runs_in_a_template_without_any_libc()
    {
        var rootfs = _fixture.Busybox.RootfsPath;
        // The premise: nothing in this template could have loaded a dynamically linked agent.
        Assert.Empty(Directory.EnumerateFiles(rootfs, "libc.so*", SearchOption.AllDirectories));
        Assert.Empty(Directory.EnumerateFiles(rootfs, "ld-linux*", SearchOption.AllDirectories));

        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Busybox));

        await using var stream = await _fixture.Runtime.ConnectAsync(sandbox.Id, AgentBundle.AgentPort, TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
        Assert.True(await AgentProbe.IsHealthyAsync(stream, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));
    }

    [Fact]
    public async Task Creating_a_sandbox_copies_nothing_of_the_template()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

        // The writable layer starts empty: only the mount points runc made for its own mounts can appear in it.
        var entries = Directory.EnumerateFileSystemEntries(sandbox.Layout.Upper, "*", SearchOption.AllDirectories)
            .Where(p => !Directory.Exists(p))
            .Select(p => Path.GetRelativePath(sandbox.Layout.Upper, p))
            .ToList();
        Assert.True(entries.Count <= 4, "files in the upper layer right after start: " + string.Join(", ", entries));
    }

    [Fact]
    public async Task ConnectAsync_names_a_missing_sandbox_and_a_closed_port()
    {
        await Assert.ThrowsAsync<SandboxNotFoundException>(async () =>
            await _fixture.Runtime.ConnectAsync("no-such-sandbox", AgentBundle.AgentPort, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));

        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Busybox));
        var error = await Assert.ThrowsAsync<SandboxPortUnreachableException>(async () =>
            await _fixture.Runtime.ConnectAsync(sandbox.Id, 1234, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));
        Assert.Equal(1234, error.Port);
    }

    [Fact]
    public async Task Destroy_leaves_no_process_mount_netns_or_cgroup_and_is_idempotent()
    {
        var before = _fixture.Footprint();
        var spec = _fixture.Spec(_fixture.Base);
        var sandbox = await _fixture.Runtime.StartAsync(spec, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        var layout = new SandboxLayout(_fixture.Options, sandbox.SandboxId);
        var netns = NetnsInode(layout.NetnsFile);
        var pids = Cgroups.Pids(CgroupDirectory(sandbox.SandboxId, "pids"));
        Assert.Contains(sandbox.HostPid!.Value, pids);
        var during = _fixture.Footprint();
        Assert.True(during.Mounts >= before.Mounts + 2, $"overlay and netns mounts expected: {during}");

        await _fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));

        Assert.Equal(before, _fixture.Footprint());
        Assert.All(pids, pid => Assert.False(IsProcessOf(pid, sandbox.SandboxId), $"process {pid} of the sandbox is still alive: {Describe(pid)}"));
        Assert.Empty(HostNamespaceReferences.Find(netns, _fixture.Options.StateDirectory, sandbox.SandboxId));
        Assert.DoesNotContain(await _fixture.Runtime.ListAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(30))), s => s.SandboxId == sandbox.SandboxId);
        Assert.Null(await _fixture.Runtime.GetUsageAsync(sandbox.SandboxId, TestEnvironment.Timeout(TimeSpan.FromSeconds(30))));
        // runc's own state of it is gone too (removed without runc delete, RuncCli.TryForgetStopped).
        Assert.False(Directory.Exists(Path.Combine(_fixture.Options.RuncRoot, sandbox.SandboxId)));

        // Idempotent: a second destroy of the same id succeeds and changes nothing.
        await _fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        Assert.Equal(before, _fixture.Footprint());
    }

    [Fact]
    public async Task Repeated_create_and_destroy_leaks_nothing()
    {
        var cycles = int.TryParse(Environment.GetEnvironmentVariable("PADDOCK_TEST_CYCLES"), out var n) && n > 0 ? n : 20;
        var before = _fixture.Footprint();
        for (var i = 0; i < cycles; i++)
        {
            var sandbox = await _fixture.Runtime.StartAsync(_fixture.Spec(_fixture.Base), TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
            ulong netns;
            try
            {
                netns = NetnsInode(new SandboxLayout(_fixture.Options, sandbox.SandboxId).NetnsFile);
                await using var stream = await _fixture.Runtime.ConnectAsync(sandbox.SandboxId, AgentBundle.AgentPort, TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
                Assert.True(await AgentProbe.IsHealthyAsync(stream, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));
            }
            finally
            {
                await _fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
            }
            // Checked at once: the kernel reuses a freed namespace's inode number for the next one.
            Assert.Empty(HostNamespaceReferences.Find(netns, _fixture.Options.StateDirectory, sandbox.SandboxId));
        }
        Assert.Equal(before, _fixture.Footprint());
        Assert.Empty(await _fixture.Runtime.ListAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(30))));
    }

    [Fact]
    public async Task A_new_runtime_instance_lists_and_reaches_a_running_sandbox()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Busybox));

        using var restarted = _fixture.NewRuntime();
        var listed = Assert.Single(await restarted.ListAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(30))), s => s.SandboxId == sandbox.Id);
        Assert.Equal(sandbox.Sandbox.HostPid, listed.HostPid);
        Assert.Equal(sandbox.Sandbox.StartedAt, listed.StartedAt);
        await using var stream = await restarted.ConnectAsync(sandbox.Id, AgentBundle.AgentPort, TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
        Assert.True(await AgentProbe.IsHealthyAsync(stream, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));
        Assert.Empty(await restarted.CleanupLeftoversAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(30))));
    }

    [Fact]
    public async Task Leftovers_of_a_dead_sandbox_are_found_and_removed()
    {
        var before = _fixture.Footprint();
        var sandbox = await _fixture.Runtime.StartAsync(_fixture.Spec(_fixture.Busybox), TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        try
        {
            // The sandbox dies behind the runtime's back (as in a crash): its init is killed from the host.
            Assert.Equal(0, Signals.Send(sandbox.HostPid!.Value, Signals.SIGKILL));
            using var restarted = _fixture.NewRuntime();
            await WaitUntilAsync(async () => !(await restarted.ListAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(30)))).Any(s => s.SandboxId == sandbox.SandboxId));

            var removed = await restarted.CleanupLeftoversAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));

            Assert.Contains(sandbox.SandboxId, removed);
            Assert.Equal(before, _fixture.Footprint());
        }
        finally
        {
            await _fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        }
    }

    [Fact]
    public async Task A_failed_start_leaves_nothing_behind()
    {
        var before = _fixture.Footprint();
        // A template whose /etc/hosts is a directory: runc cannot bind the sandbox's hosts file on it.
        var broken = Path.Combine(TestEnvironment.StateRoot, "broken-template-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(Path.Combine(broken, "etc", "hosts"));
        try
        {
            var spec = _fixture.Spec(_fixture.Busybox) with { TemplateLayers = [broken] };
            var error = await Assert.ThrowsAsync<SandboxStartException>(() => _fixture.Runtime.StartAsync(spec, TestEnvironment.Timeout(TimeSpan.FromSeconds(60))));

            Assert.Contains("runc run failed", error.Message, StringComparison.Ordinal);
            Assert.Equal(before, _fixture.Footprint());
            Assert.Empty(await _fixture.Runtime.ListAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(30))));
        }
        finally
        {
            Directory.Delete(broken, recursive: true);
        }
    }

    [Fact]
    public async Task Starting_an_id_that_exists_fails_and_leaves_the_running_sandbox_alone()
    {
        var spec = _fixture.Spec(_fixture.Busybox);
        await using var sandbox = await _fixture.StartAsync(spec);

        await Assert.ThrowsAsync<SandboxStartException>(() => _fixture.Runtime.StartAsync(spec, TestEnvironment.Timeout(TimeSpan.FromSeconds(60))));

        await using var stream = await _fixture.Runtime.ConnectAsync(sandbox.Id, AgentBundle.AgentPort, TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
        Assert.True(await AgentProbe.IsHealthyAsync(stream, TestEnvironment.Timeout(TimeSpan.FromSeconds(10))));
    }

    private string CgroupDirectory(string sandboxId, string controller) =>
        LegacyCgroups.Discover(_fixture.Options.CgroupParent).Directory(sandboxId, controller)
        ?? throw new InvalidOperationException($"no {controller} hierarchy");

    private static ulong NetnsInode(string file) => Files.Stat(file).Inode;

    /// <summary>
    /// Whether <paramref name="pid"/> is a live process of the sandbox (a pid can be reused, so its cgroup is
    /// checked). A zombie is not live: it has released everything and waits only for the host's init to reap it
    /// (the container's init is the host init's child once runc exits).
    /// </summary>
    private static bool IsProcessOf(int pid, string sandboxId)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var state = stat[(stat.LastIndexOf(')') + 2)..][0];
            return state != 'Z' && File.ReadAllText($"/proc/{pid}/cgroup").Contains("/" + sandboxId, StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static string Describe(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (IOException)
        {
            return "gone";
        }
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        // Bounded: 200 x 50 ms.
        for (var i = 0; i < 200; i++)
        {
            if (await condition())
            {
                return;
            }
            await Task.Delay(50);
        }
        throw new TimeoutException("condition not met within 10 s");
    }
}

/// <summary>
/// Who on the host still refers to a sandbox's network namespace: processes (ns links and open fds) and mounts.
/// </summary>
/// <remarks>
/// The kernel gives a new namespace the lowest free inode number, so the number of a freed one goes at once to the next
/// namespace made anywhere on the host, such as another test's sandbox running meanwhile (CI of 2026-12-07 found a
/// cluster test's netns mount under the number of one destroyed here). So only what can be this sandbox's counts:
/// mounts under the runtime's state directory, this test process, and processes in a cgroup named after the sandbox.
/// </remarks>
internal static class HostNamespaceReferences
{
    public static IReadOnlyList<string> Find(ulong inode, string stateDirectory, string sandboxId)
    {
        var found = new List<string>();
        var link = $"net:[{inode}]";
        foreach (var proc in Directory.EnumerateDirectories("/proc"))
        {
            var name = Path.GetFileName(proc);
            if (!int.TryParse(name, out var pid))
            {
                continue;
            }
            try
            {
                if (pid != Environment.ProcessId && !File.ReadAllText(Path.Combine(proc, "cgroup")).Contains(sandboxId, StringComparison.Ordinal))
                {
                    continue;
                }
                if (new FileInfo(Path.Combine(proc, "ns", "net")).LinkTarget == link)
                {
                    found.Add($"process {name} is in it");
                }
                foreach (var fd in Directory.EnumerateFileSystemEntries(Path.Combine(proc, "fd")))
                {
                    if (new FileInfo(fd).LinkTarget == link)
                    {
                        found.Add($"process {name} holds it open as {fd}");
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // the process exited while we looked
            }
        }
        foreach (var m in MountTable.Read())
        {
            if (m.FsType == "nsfs" && m.Root == link && m.MountPoint.StartsWith(stateDirectory.TrimEnd('/') + "/", StringComparison.Ordinal))
            {
                found.Add($"mounted at {m.MountPoint}");
            }
        }
        return found;
    }
}
