using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Sandboxes;

/// <summary>
/// The idle freezer on the real daemon and the gVisor tier, with <c>--freeze-after 1</c>: an idle sandbox's Sentry,
/// gofer and stubs are frozen (its freezer.state reads FROZEN) and a command thaws it; a sandbox running a process of
/// the user's besides the agent (which only the Sentry can tell, through runsc ps) stays awake until that process ends;
/// a frozen sandbox is killed cleanly. A frozen Sentry answers nothing, so each command that succeeds after a freeze
/// shows the thaw came first.
/// </summary>
[Collection(GvisorCollection.Name)]
public sealed class GvisorFreezeTests(GvisorFixture fixture) : IAsyncLifetime
{
    private readonly TempDir _state = new();

    private Task<TestDaemon> StartDaemonAsync() =>
        TestDaemon.StartAsync(fixture.Runtime, _state.Path, o => o with { FreezeAfter = TimeSpan.FromSeconds(1) }, new BaseOnly(fixture.Base));

    [GvisorFact]
    public async Task An_idle_gVisor_sandbox_is_frozen_a_busy_one_is_not_and_commands_thaw_them()
    {
        await using var daemon = await StartDaemonAsync();
        var freezer = daemon.Services.GetRequiredService<IdleFreezer>();
        var (busy, busyToken) = await CreateSandboxAsync(daemon);
        Assert.Equal(0, (await DaemonCommands.RunAsync(daemon, busy, busyToken, "nohup sleep 600 >/dev/null 2>&1 &")).ExitCode);
        // Created after the busy one's last call: once it is frozen, the busy one has been idle at least as long.
        var (idle, idleToken) = await CreateSandboxAsync(daemon);

        await WaitForFreezerStateAsync(idle, "FROZEN");
        for (var i = 0; i < 300 && !freezer.IsFrozen(idle); i++)
        {
            await Task.Delay(100);
        }
        Assert.True(freezer.IsFrozen(idle));
        // The runtime's list (the lost-sandbox sweep's, recovery's) does not ask the frozen Sentry: it answers, with it.
        Assert.Contains(await fixture.Runtime.ListAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(30))), s => s.SandboxId == idle);
        Assert.Equal("THAWED", FreezerState(busy));
        Assert.False(freezer.IsFrozen(busy));
        Assert.Equal("running", Get<string>((await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{idle}")).Body!, "state"));

        Assert.Equal((0, "thawed\n"), await DaemonCommands.RunAsync(daemon, idle, idleToken, "echo thawed"));
        // Idle again, frozen again, and thawed again by the next call.
        await WaitForFreezerStateAsync(idle, "FROZEN");
        Assert.Equal((0, "again\n"), await DaemonCommands.RunAsync(daemon, idle, idleToken, "echo again"));

        // Once the user's process is gone, the busy one is frozen like any other.
        Assert.Equal(0, (await DaemonCommands.RunAsync(daemon, busy, busyToken, "pkill -x sleep; true")).ExitCode);
        await WaitForFreezerStateAsync(busy, "FROZEN");

        // A frozen sandbox is killed, and nothing of it stays running.
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{busy}")).Status);
        await daemon.Manager.WaitForTeardownsAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        Assert.DoesNotContain(await fixture.Runtime.ListAsync(CancellationToken.None), s => s.SandboxId == busy);
    }

    private LegacyCgroups Cgroups => LegacyCgroups.Discover(fixture.Options.CgroupParent);

    private string? FreezerState(string sandboxId) => Cgroups.FreezerState(sandboxId);

    /// <summary>Polls the sandbox's freezer.state until it reads <paramref name="expected"/> (bounded: 60 s, sweeps every 0.5 s).</summary>
    private Task WaitForFreezerStateAsync(string sandboxId, string expected) =>
        FreezeTests.WaitForFreezerStateAsync(Cgroups, sandboxId, expected, TimeSpan.FromSeconds(60));

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await fixture.DestroyRunningAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }
}
