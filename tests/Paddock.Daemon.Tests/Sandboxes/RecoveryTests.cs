using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Store;
using Paddock.Daemon.Tests.Api;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Sandboxes;

/// <summary>A daemon restart over sandboxes that outlived it: each one re-adopted, marked lost, expired or destroyed.</summary>
public sealed class RecoveryTests : IAsyncLifetime
{
    private readonly TempDir _state = new();
    private readonly LocalAgentRuntime _runtime = new();

    [Fact]
    public async Task A_restarted_daemon_reconciles_its_records_with_the_runtime()
    {
        string kept, lost, expiring;
        string firstKey;
        DateTimeOffset keptEndAt, expiringEndAt;
        await using (var first = await TestDaemon.StartAsync(_runtime, _state.Path))
        {
            Assert.NotNull(first.PrintedKey);
            Assert.Equal(first.ApiKey, first.PrintedKey);
            firstKey = first.ApiKey;
            kept = Get<string>(await CreateAsync(first, """{"templateID":"base","timeout":600,"metadata":{"who":"kept"}}"""), "sandboxID");
            lost = Get<string>(await CreateAsync(first, """{"templateID":"base","timeout":600}"""), "sandboxID");
            expiring = Get<string>(await CreateAsync(first, """{"templateID":"base","timeout":2}"""), "sandboxID");
            keptEndAt = Get<DateTimeOffset>((await SendAsync(first.Api, HttpMethod.Get, $"/sandboxes/{kept}")).Body!, "endAt");
            expiringEndAt = Get<DateTimeOffset>((await SendAsync(first.Api, HttpMethod.Get, $"/sandboxes/{expiring}")).Body!, "endAt");
        }

        // While no daemon runs: one sandbox dies, a stray appears, and one deadline passes.
        Assert.True(_runtime.IsAlive(kept) && _runtime.IsAlive(lost) && _runtime.IsAlive(expiring));
        await _runtime.KillBehindTheDaemonsBackAsync(lost);
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            await _runtime.StartAsync(new SandboxSpec
            {
                SandboxId = "stray0000000000000000",
                TemplateLayers = ["/nonexistent"],
                Limits = new ResourceLimits(1, 128 << 20, 64, 1 << 30),
            }, timeout.Token);
        }
        while (DateTimeOffset.UtcNow <= expiringEndAt.AddMilliseconds(200))
        {
            await Task.Delay(100);
        }

        await using var second = await TestDaemon.StartAsync(_runtime, _state.Path);
        Assert.Null(second.PrintedKey);
        Assert.Equal(firstKey, second.ApiKey);

        var adopted = await SendAsync(second.Api, HttpMethod.Get, $"/sandboxes/{kept}");
        Assert.Equal(HttpStatusCode.OK, adopted.Status);
        Assert.Equal(keptEndAt, Get<DateTimeOffset>(adopted.Body!, "endAt"));
        Assert.Equal("kept", (string?)adopted.Body!["metadata"]!["who"]);
        var logs = await SendAsync(second.Api, HttpMethod.Get, $"/sandboxes/{kept}/logs");
        Assert.Contains(logs.Body!["logs"]!.AsArray(), l => Get<string>(l!, "line").StartsWith("re-adopted after a daemon restart", StringComparison.Ordinal));
        // The proxy reaches it again.
        using (var health = new HttpRequestMessage(HttpMethod.Get, "/health"))
        {
            health.Headers.Add("E2b-Sandbox-Id", kept);
            health.Headers.Add("E2b-Sandbox-Port", "49983");
            using var response = await second.Raw.SendAsync(health);
            Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        }

        Assert.Contains("lost", AssertError(HttpStatusCode.NotFound, await SendAsync(second.Api, HttpMethod.Get, $"/sandboxes/{lost}")), StringComparison.Ordinal);
        Assert.Contains("timed out while the daemon was down", await WaitUntilGoneAsync(second, expiring, TimeSpan.FromSeconds(30)), StringComparison.Ordinal);
        Assert.False(_runtime.IsAlive(expiring));
        Assert.False(_runtime.IsAlive("stray0000000000000000"));

        var store = second.Services.GetRequiredService<ISandboxStore>();
        Assert.Equal(SandboxState.Running, (await store.GetAsync(kept, CancellationToken.None))!.State);
        Assert.Equal(SandboxState.Killed, (await store.GetAsync(lost, CancellationToken.None))!.State);
        Assert.Null(await store.GetAsync("stray0000000000000000", CancellationToken.None));

        // The re-adopted sandbox's deadline is armed again: moving it kills it.
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(second.Api, HttpMethod.Post, $"/sandboxes/{kept}/timeout", """{"timeout":1}""")).Status);
        Assert.Contains("timed out", await WaitUntilGoneAsync(second, kept, TimeSpan.FromSeconds(30)), StringComparison.Ordinal);
        Assert.False(_runtime.IsAlive(kept));
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _runtime.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }
}

/// <summary>Sandboxes that die while the daemon runs are noticed by its housekeeping, not only at their deadline.</summary>
public sealed class LostSandboxTests : IAsyncLifetime
{
    private readonly TempDir _state = new();
    private readonly LocalAgentRuntime _runtime = new();

    [Fact]
    public async Task A_sandbox_that_dies_on_its_own_is_marked_lost_and_unlisted()
    {
        await using var daemon = await TestDaemon.StartAsync(_runtime, _state.Path, o => o with { HousekeepingPeriod = TimeSpan.FromMilliseconds(200) });
        var id = Get<string>(await CreateAsync(daemon, """{"templateID":"base","timeout":600}"""), "sandboxID");
        await _runtime.KillBehindTheDaemonsBackAsync(id);
        Assert.Contains("lost: it stopped running on its own", await WaitUntilGoneAsync(daemon, id, TimeSpan.FromSeconds(30)), StringComparison.Ordinal);
        var listed = await SendAsync(daemon.Api, HttpMethod.Get, "/v2/sandboxes");
        Assert.DoesNotContain(listed.Body!.AsArray(), s => Get<string>(s!, "sandboxID") == id);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _runtime.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }
}
