using System.Globalization;
using System.Net;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Sandboxes;

/// <summary>
/// DELETE /sandboxes/{id} on the runc tier answers once every process of the sandbox is gone and removes the rest in
/// the background: the processes are gone when it answers, the pieces shortly after, a daemon stopped right after a
/// kill leaves nothing, and the sandbox counts against the host's capacity until its teardown is done (its team's
/// share is free when the kill answers, as E2B's clients expect).
/// </summary>
[Collection(RuncCollection.Name)]
public sealed class KillTests(RuncFixture fixture) : IAsyncLifetime
{
    private readonly TempDir _state = new();

    private readonly RuncOptions _options = RuncFixture.OwnOptions("daemon-kill", "paddock-kill-test");

    private RuncRuntime NewRuntime() => fixture.NewRuntime(_options);

    private BaseOnly Templates => new(fixture.Base);

    [Fact]
    public async Task A_kill_answers_with_every_process_gone_and_the_rest_is_removed_after()
    {
        using var runtime = NewRuntime();
        await using var daemon = await TestDaemon.StartAsync(runtime, _state.Path, templates: Templates);
        var created = await CreateAsync(daemon, """{"templateID":"base"}""");
        var id = Get<string>(created, "sandboxID");
        var token = Get<string>(created, "envdAccessToken");
        // A process of the user's besides the agent, started in the background of a command that returns.
        Assert.Equal(0, (await DaemonCommands.RunAsync(daemon, id, token, "nohup sleep 600 >/dev/null 2>&1 &")).ExitCode);
        var cgroups = LegacyCgroups.Discover(_options.CgroupParent);
        var before = cgroups.ProcessesOf(id);
        Assert.True(before.Count >= 2, $"expected the agent and sleep in the sandbox's cgroup, found {before.Count}");

        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);

        // When DELETE has answered: nothing of it runs, in its cgroup or anywhere on the host.
        Assert.Empty(cgroups.ProcessesOf(id));
        Assert.All(before, pid => Assert.False(IsRunning(pid), $"process {pid} of the killed sandbox still runs"));
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{id}")).Status);

        // The pieces go in the background; bounded wait, then nothing of it is left on the host.
        await WaitForTeardownsAsync(daemon.Manager);
        Assert.Empty(await runtime.ListAsync(CancellationToken.None));
        Assert.Equal(new HostFootprint(0, 0, 0, 0, 0), HostFootprint.Take(_options));
    }

    [Fact]
    public async Task A_daemon_stopped_right_after_a_kill_leaves_nothing()
    {
        using var runtime = NewRuntime();
        await using (var daemon = await TestDaemon.StartAsync(runtime, _state.Path, templates: Templates))
        {
            var ids = new List<string>();
            for (var i = 0; i < 3; i++)
            {
                ids.Add(Get<string>(await CreateAsync(daemon, """{"templateID":"base"}"""), "sandboxID"));
            }
            foreach (var id in ids)
            {
                Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
            }
            // Disposed at once: the teardowns of all three are still queued or running (two at a time).
        }
        Assert.Empty(await runtime.ListAsync(CancellationToken.None));
        Assert.Equal(new HostFootprint(0, 0, 0, 0, 0), HostFootprint.Take(_options));
    }

    [Fact]
    public async Task A_killed_sandbox_counts_against_the_host_capacity_until_its_teardown_is_done_but_not_against_its_team()
    {
        await using var inner = new LocalAgentRuntime();
        var gated = new GatedTeardownRuntime(inner);
        await using var daemon = await TestDaemon.StartAsync(gated, _state.Path, o => o with { MaxSandboxes = 1 });
        var first = Get<string>(await CreateAsync(daemon, """{"templateID":"base"}"""), "sandboxID");
        try
        {
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{first}")).Status);
            Assert.Equal(1, daemon.Manager.PendingTeardowns);
            Assert.Equal(default, daemon.Manager.UsageOf(Paddock.Daemon.Store.SandboxRecord.DefaultTeamId));
            Assert.True(inner.IsAlive(first), "the teardown ran before DELETE answered; this test needs it held");
            var refused = await SendAsync(daemon.Api, HttpMethod.Post, "/sandboxes", """{"templateID":"base"}""");
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.Status);
        }
        finally
        {
            // Also when an assertion failed: the daemon's disposal waits for the held teardown.
            gated.ReleaseTeardowns();
        }
        await WaitForTeardownsAsync(daemon.Manager);
        Assert.False(inner.IsAlive(first));
        var second = Get<string>(await CreateAsync(daemon, """{"templateID":"base"}"""), "sandboxID");
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{second}")).Status);
    }

    private static async Task WaitForTeardownsAsync(SandboxManager manager)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await manager.WaitForTeardownsAsync(timeout.Token);
        Assert.Equal(0, manager.PendingTeardowns);
    }

    /// <summary>Whether <paramref name="pid"/> is a process that has not exited (a zombie has: it only waits to be reaped).</summary>
    private static bool IsRunning(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            // The state follows the command name in parentheses, which may itself hold ')'.
            var state = stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[0];
            return state is not ("Z" or "X");
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            return false;
        }
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        using var runtime = NewRuntime();
        await RuncFixture.DestroyAllAsync(runtime);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }


    /// <summary>
    /// The local test runtime with the kill split as runc does it, and every teardown held until the test releases
    /// it. Its "kill" leaves the local agent running (it has no pid namespace to kill it with), so that the test can
    /// see the teardown has not run yet.
    /// </summary>
    private sealed class GatedTeardownRuntime(LocalAgentRuntime inner) : ISandboxRuntime
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string Name => inner.Name;

        public void ReleaseTeardowns() => _released.TrySetResult();

        public Task<bool> KillProcessesAsync(string sandboxId, CancellationToken cancellationToken) => Task.FromResult(true);

        public async Task DestroyAsync(string sandboxId, CancellationToken cancellationToken)
        {
            await _released.Task.WaitAsync(cancellationToken);
            await inner.DestroyAsync(sandboxId, cancellationToken);
        }

        public Task<RuntimeSandbox> StartAsync(SandboxSpec spec, CancellationToken cancellationToken) => inner.StartAsync(spec, cancellationToken);

        public Task<IReadOnlyList<RuntimeSandbox>> ListAsync(CancellationToken cancellationToken) => inner.ListAsync(cancellationToken);

        public Task<IReadOnlyList<string>> CleanupLeftoversAsync(CancellationToken cancellationToken) => inner.CleanupLeftoversAsync(cancellationToken);

        public Task<SandboxUsage?> GetUsageAsync(string sandboxId, CancellationToken cancellationToken) => inner.GetUsageAsync(sandboxId, cancellationToken);

        public ValueTask<Stream> ConnectAsync(string sandboxId, int port, CancellationToken cancellationToken) => inner.ConnectAsync(sandboxId, port, cancellationToken);

        public Task<long> SnapshotFilesystemAsync(string sandboxId, string destination, CancellationToken cancellationToken) =>
            inner.SnapshotFilesystemAsync(sandboxId, destination, cancellationToken);
    }
}
