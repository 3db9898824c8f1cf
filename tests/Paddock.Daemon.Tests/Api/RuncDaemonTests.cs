using System.Net;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;
using static Paddock.Daemon.Tests.Teams.TenantApi;

namespace Paddock.Daemon.Tests.Api;

/// <summary>
/// The real daemon over the real runc tier and the real base template: create, commands through the proxy, restart
/// with re-adoption, kill, and nothing left on the host. Needs root and runc, as CI has.
/// </summary>
[Collection(RuncCollection.Name)]
public sealed class RuncDaemonTests(RuncFixture fixture) : IAsyncLifetime
{
    private readonly TempDir _state = new();

    private readonly RuncOptions _options = RuncFixture.OwnOptions("daemon-api", "paddock-daemon-test");

    private RuncRuntime NewRuntime() => fixture.NewRuntime(_options);

    private ITemplateLookup Templates => new BaseOnly(fixture.Base);

    [Fact]
    public async Task Sandboxes_run_commands_through_the_proxy_and_survive_a_daemon_restart()
    {
        string id, token;
        using (var runtime = NewRuntime())
        await using (var daemon = await TestDaemon.StartAsync(runtime, _state.Path, templates: Templates))
        {
            var created = await CreateAsync(daemon, """{"templateID":"base","timeout":600}""");
            id = Get<string>(created, "sandboxID");
            token = Get<string>(created, "envdAccessToken");

            var (exit, stdout) = await DaemonCommands.RunAsync(daemon, id, token, "whoami; cat /sys/fs/cgroup/pids/work/pids.max");
            Assert.Equal(0, exit);
            // The default user of base, and the daemon's default process limit applied by the tier: in the sandbox's
            // work cgroup, where its processes are counted, plus one for the agent's spawn thread (PidReserve).
            Assert.Equal("user\n1025\n", stdout);
            Assert.Equal("root\n", (await DaemonCommands.RunAsync(daemon, id, token, "whoami", user: "root")).Stdout);
            await Assert.ThrowsAsync<IOException>(() => DaemonCommands.RunAsync(daemon, id, token: null, "true"));

            var metrics = await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{id}/metrics");
            Assert.Equal(HttpStatusCode.OK, metrics.Status);
            Assert.True(Get<long>(metrics.Body!.AsArray()[0]!, "memUsed") > 0);
        }

        // The daemon is gone; the sandbox is not. A new daemon with a new runtime instance re-adopts it.
        using (var runtime = NewRuntime())
        await using (var daemon = await TestDaemon.StartAsync(runtime, _state.Path, templates: Templates))
        {
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{id}")).Status);
            Assert.Equal("still here\n", (await DaemonCommands.RunAsync(daemon, id, token, "echo still here")).Stdout);
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
            // The kill answered once its processes were gone; the rest is removed in the background.
            await daemon.Manager.WaitForTeardownsAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
            Assert.Empty(await runtime.ListAsync(CancellationToken.None));
            Assert.Empty(await runtime.CleanupLeftoversAsync(CancellationToken.None));
            Assert.Equal(new HostFootprint(0, 0, 0, 0, 0), HostFootprint.Take(_options));
        }
    }

    [Fact]
    public async Task Pauses_count_against_the_daemons_paused_limit_until_the_team_has_its_own()
    {
        using var runtime = NewRuntime();
        await using var daemon = await TestDaemon.StartAsync(runtime, _state.Path, o => o with { MaxPausedPerTeam = 1 }, Templates);
        var (team, _, client) = await TeamWithClientAsync(daemon);
        using (client)
        {
            var first = await CreateSandboxAsync(client);
            var second = await CreateSandboxAsync(client);
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(client, HttpMethod.Post, $"/sandboxes/{first}/pause")).Status);
            Assert.Contains("maxPausedSandboxes", AssertError(HttpStatusCode.TooManyRequests,
                await SendAsync(client, HttpMethod.Post, $"/sandboxes/{second}/pause")), StringComparison.Ordinal);
            // The refused pause changed nothing: the sandbox still runs.
            Assert.Equal("running", Get<string>((await SendAsync(client, HttpMethod.Get, $"/sandboxes/{second}")).Body!, "state"));
            Assert.Equal(1, Get<int>((await SendAsync(client, HttpMethod.Get, "/teams")).Body!.AsArray()[0]!["usage"]!, "pausedSandboxes"));

            // The team's own limit overrides the daemon's.
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(daemon.Api, HttpMethod.Patch, $"/teams/{team}", """{"maxPausedSandboxes":2}""")).Status);
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(client, HttpMethod.Post, $"/sandboxes/{second}/pause")).Status);
            Assert.Equal(2, Get<int>((await SendAsync(client, HttpMethod.Get, "/teams")).Body!.AsArray()[0]!["usage"]!, "pausedSandboxes"));
            foreach (var id in new[] { first, second })
            {
                Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(client, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
            }
            Assert.Equal(0, Get<int>((await SendAsync(client, HttpMethod.Get, "/teams")).Body!.AsArray()[0]!["usage"]!, "pausedSandboxes"));
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
}
