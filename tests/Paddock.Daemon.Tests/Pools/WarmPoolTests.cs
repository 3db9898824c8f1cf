using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Pools;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Pools;

/// <summary>
/// Warm pools on the real daemon, runc tier and base template: a claim is a working sandbox with the caller's
/// variables and token and nothing of anyone else's, pool sandboxes are invisible, the pool refills, a create the pool
/// cannot serve starts cold, and neither a shutdown nor a crash leaves a pool sandbox behind or adopted.
/// </summary>
[Collection(RuncCollection.Name)]
public sealed class WarmPoolTests(RuncFixture fixture) : IAsyncLifetime
{
    private static readonly TimeSpan FillWait = TimeSpan.FromSeconds(90);

    private readonly TempDir _state = new();

    private readonly RuncOptions _options = RuncFixture.OwnOptions("daemon-pools", "paddock-pool-test");

    private RuncRuntime NewRuntime() => fixture.NewRuntime(_options);

    private BaseOnly Templates => new(fixture.Base);

    private static DaemonOptions WithPool(DaemonOptions options, int size) =>
        options with { Pools = new PoolSettings { Sizes = new Dictionary<string, int> { ["base"] = size }, RefillConcurrency = 2 } };

    /// <summary>Polls (bounded) until the base pool holds <paramref name="count"/> ready sandboxes.</summary>
    private static async Task WaitForReadyAsync(WarmPools pools, int count)
    {
        var deadline = DateTime.UtcNow + FillWait;
        while (!(pools.ReadyCounts.TryGetValue("base", out var ready) && ready >= count))
        {
            Assert.True(DateTime.UtcNow < deadline, $"the base pool did not reach {count} ready sandboxes within {FillWait}");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task A_claim_is_a_working_sandbox_with_the_callers_settings_and_pool_sandboxes_stay_invisible()
    {
        using var runtime = NewRuntime();
        await using var daemon = await TestDaemon.StartAsync(runtime, _state.Path, o => WithPool(o, 2), Templates);
        var pools = daemon.Services.GetRequiredService<WarmPools>();
        await WaitForReadyAsync(pools, 2);
        var pooledIds = pools.ReadyIds;

        // Invisible: not listed, not reachable through the proxy, unknown to the API.
        var listed = await SendAsync(daemon.Api, HttpMethod.Get, "/v2/sandboxes");
        Assert.Equal(HttpStatusCode.OK, listed.Status);
        Assert.Empty(listed.Body!.AsArray());
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{pooledIds[0]}")).Status);
        await Assert.ThrowsAsync<IOException>(() => DaemonCommands.RunAsync(daemon, pooledIds[0], token: null, "true"));

        // Waiting members run in the background (the cgroup's minimum cpu.shares); a claimed one at the normal value.
        var cgroups = LegacyCgroups.Discover(_options.CgroupParent);
        Assert.All(pooledIds, id => Assert.Equal(Cgroups.BackgroundCpuShares, CpuShares(cgroups, id)));
        // Warmed through the proxy's client before they counted as ready (the agent logs nothing of it at this level).
        Assert.True(pools.WarmedCount >= pooledIds.Count, $"{pools.WarmedCount} pool sandboxes were warmed, {pooledIds.Count} are ready");

        var (first, firstTiming) = await CreateTimedAsync(daemon, """{"templateID":"base","envVars":{"POOL_SECRET":"first-user"},"secure":true}""");
        var firstId = Get<string>(first, "sandboxID");
        Assert.Equal(Cgroups.NormalCpuShares, CpuShares(cgroups, firstId));
        var firstToken = Get<string>(first, "envdAccessToken");
        Assert.True(pooledIds.Contains(firstId), $"not claimed from the pool; the create's steps: {firstTiming}");
        Assert.Contains("pool-claim", firstTiming, StringComparison.Ordinal);
        Assert.DoesNotContain("runc-run", firstTiming, StringComparison.Ordinal);

        // The caller's variables and token, the template's default user; nothing else opens it.
        Assert.Equal("first-user user\n", (await DaemonCommands.RunAsync(daemon, firstId, firstToken, "echo $POOL_SECRET $(whoami)")).Stdout);
        await Assert.ThrowsAsync<IOException>(() => DaemonCommands.RunAsync(daemon, firstId, token: null, "true"));
        await Assert.ThrowsAsync<IOException>(() => DaemonCommands.RunAsync(daemon, firstId, token: "not-the-token", "true"));
        var afterClaim = await SendAsync(daemon.Api, HttpMethod.Get, "/v2/sandboxes");
        Assert.Equal([firstId], afterClaim.Body!.AsArray().Select(s => Get<string>(s!, "sandboxID")));

        // A file and a variable of the first user: the next claimer sees neither.
        Assert.Equal(0, (await DaemonCommands.RunAsync(daemon, firstId, firstToken, "echo mine > /tmp/left-behind")).ExitCode);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{firstId}")).Status);
        var second = await CreateAsync(daemon, """{"templateID":"base","envVars":{"OTHER":"second-user"},"secure":false}""");
        var secondId = Get<string>(second, "sandboxID");
        Assert.NotEqual(firstId, secondId);
        Assert.Contains(secondId, pooledIds);
        // secure=false: the claim removed the pool's token, so none is needed.
        Assert.Equal("unset second-user absent\n",
            (await DaemonCommands.RunAsync(daemon, secondId, token: null, "echo ${POOL_SECRET:-unset} $OTHER $(cat /tmp/left-behind 2>/dev/null || echo absent)")).Stdout);

        // Both claims were replaced by fresh sandboxes, none of them the claimed ones.
        await WaitForReadyAsync(pools, 2);
        Assert.DoesNotContain(firstId, pools.ReadyIds);
        Assert.DoesNotContain(secondId, pools.ReadyIds);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{secondId}")).Status);

        // secure, no variables: the member's own token is handed out as it is, with no POST /init; it is required.
        Assert.Equal(0, pools.InitsSkipped);
        var readyBefore = pools.ReadyIds;
        var (third, thirdTiming) = await CreateTimedAsync(daemon, """{"templateID":"base","secure":true}""");
        var thirdId = Get<string>(third, "sandboxID");
        var thirdToken = Get<string>(third, "envdAccessToken");
        Assert.True(readyBefore.Contains(thirdId), $"not claimed from the pool; the create's steps: {thirdTiming}");
        Assert.Equal(1, pools.InitsSkipped);
        Assert.NotEqual(firstToken, thirdToken);
        Assert.Equal("user\n", (await DaemonCommands.RunAsync(daemon, thirdId, thirdToken, "whoami")).Stdout);
        await Assert.ThrowsAsync<IOException>(() => DaemonCommands.RunAsync(daemon, thirdId, token: null, "true"));
        await Assert.ThrowsAsync<IOException>(() => DaemonCommands.RunAsync(daemon, thirdId, token: "not-the-token", "true"));
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{thirdId}")).Status);
    }

    [Fact]
    public async Task A_create_the_pool_cannot_serve_starts_cold_and_leaves_the_pool_alone()
    {
        using var runtime = NewRuntime();
        await using var daemon = await TestDaemon.StartAsync(runtime, _state.Path, o => WithPool(o, 1), Templates);
        var pools = daemon.Services.GetRequiredService<WarmPools>();
        await WaitForReadyAsync(pools, 1);
        var pooled = pools.ReadyIds.Single();

        // Other limits than the pool's: a cold start, with those limits applied.
        var (created, timing) = await CreateTimedAsync(daemon, """{"templateID":"base","cpuCount":1,"memoryMB":256,"envVars":{"K":"cold"}}""");
        var id = Get<string>(created, "sandboxID");
        var token = Get<string>(created, "envdAccessToken");
        Assert.NotEqual(pooled, id);
        Assert.Contains("runc-run", timing, StringComparison.Ordinal);
        Assert.DoesNotContain("pool-claim", timing, StringComparison.Ordinal);
        Assert.Equal([pooled], pools.ReadyIds);
        var stdout = (await DaemonCommands.RunAsync(daemon, id, token, "echo $K; cat /sys/fs/cgroup/memory/memory.limit_in_bytes")).Stdout;
        Assert.Equal($"cold\n{256L * 1024 * 1024}\n", stdout);
    }

    [Fact]
    public async Task An_empty_pool_falls_back_to_a_cold_start()
    {
        using var runtime = NewRuntime();
        // The pool's template cannot be found, so the pool stays empty (its refiller backs off) while creates work.
        await using var daemon = await TestDaemon.StartAsync(runtime, _state.Path,
            o => o with { Pools = new PoolSettings { Sizes = new Dictionary<string, int> { ["pool-only"] = 2 } } }, Templates);
        var pools = daemon.Services.GetRequiredService<WarmPools>();
        Assert.Empty(pools.ReadyIds);

        var (created, timing) = await CreateTimedAsync(daemon, """{"templateID":"base","envVars":{"K":"v"}}""");
        Assert.Contains("runc-run", timing, StringComparison.Ordinal);
        Assert.Equal("v\n", (await DaemonCommands.RunAsync(daemon, Get<string>(created, "sandboxID"), Get<string>(created, "envdAccessToken"), "echo $K")).Stdout);
    }

    [Fact]
    public async Task Shutdown_destroys_every_pool_sandbox()
    {
        using (var runtime = NewRuntime())
        await using (var daemon = await TestDaemon.StartAsync(runtime, _state.Path, o => WithPool(o, 3), Templates))
        {
            await WaitForReadyAsync(daemon.Services.GetRequiredService<WarmPools>(), 3);
            Assert.Equal(3, (await runtime.ListAsync(CancellationToken.None)).Count);
        }
        using var after = NewRuntime();
        Assert.Empty(await after.ListAsync(CancellationToken.None));
        Assert.Equal(new HostFootprint(0, 0, 0, 0, 0), HostFootprint.Take(_options));
    }

    [Fact]
    public async Task After_a_crash_pool_sandboxes_are_destroyed_not_adopted()
    {
        using var runtime = NewRuntime();
        // A pool whose daemon "crashed": it is never stopped before the next daemon starts over the same host state.
        var options = WithPool(new DaemonOptions { StateDir = _state.Path }, 2);
        var orphan = new WarmPools(runtime, Templates, options, NullLogger<WarmPools>.Instance);
        try
        {
            await orphan.StartAsync(CancellationToken.None);
            await WaitForReadyAsync(orphan, 2);
            var pooledIds = orphan.ReadyIds;

            using var restarted = NewRuntime();
            await using var daemon = await TestDaemon.StartAsync(restarted, _state.Path, templates: Templates);
            var listed = await SendAsync(daemon.Api, HttpMethod.Get, "/v2/sandboxes");
            Assert.Empty(listed.Body!.AsArray());
            var alive = (await restarted.ListAsync(CancellationToken.None)).Select(s => s.SandboxId).ToList();
            Assert.Empty(alive.Intersect(pooledIds));
            Assert.Equal(new HostFootprint(0, 0, 0, 0, 0), HostFootprint.Take(_options));
        }
        finally
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            await orphan.StopAsync(timeout.Token);
        }
    }

    private static long CpuShares(LegacyCgroups cgroups, string sandboxId) =>
        Cgroups.ReadLong(Path.Combine(cgroups.Directory(sandboxId, "cpu") ?? throw new InvalidOperationException("no cpu cgroup hierarchy"), "cpu.shares"));

    private static async Task<(System.Text.Json.Nodes.JsonNode Body, string ServerTiming)> CreateTimedAsync(TestDaemon daemon, string json)
    {
        var (status, body, response) = await SendAsync(daemon.Api, HttpMethod.Post, "/v2/sandboxes", json);
        Assert.True(status == HttpStatusCode.Created, $"create answered {(int)status}: {body?.ToJsonString()}");
        Assert.True(response.Headers.TryGetValues("Server-Timing", out var values), "the create response has no Server-Timing header");
        return (body!, string.Join(", ", values));
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
