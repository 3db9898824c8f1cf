using System.Net;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Tests.Api;
using static Paddock.Daemon.Tests.Api.ApiClient;
using static Paddock.Daemon.Tests.Teams.TenantApi;

namespace Paddock.Daemon.Tests.Sandboxes;

/// <summary>
/// The isolation tier chosen per sandbox, through the real API over two real-agent test tiers ("alpha", the default,
/// and "beta") and one the host cannot run ("gamma"): the create's choice, the team's binding, the answers for names
/// that do not exist or cannot run, and that every later call reaches the tier that started the sandbox.
/// </summary>
public sealed class IsolationTierTests : IAsyncLifetime
{
    private readonly TempDir _state = new();
    private readonly LocalAgentRuntime _alpha = new("alpha");
    private readonly LocalAgentRuntime _beta = new("beta");
    private TestDaemon _daemon = null!;

    public async Task InitializeAsync() =>
        _daemon = await TestDaemon.StartAsync(
            [SandboxTier.Of(_alpha), SandboxTier.Of(_beta), SandboxTier.Unavailable("gamma", "gamma is not installed: run scripts/setup")],
            _state.Path);

    public async Task DisposeAsync()
    {
        await _daemon.DisposeAsync();
        await _alpha.DisposeAsync();
        await _beta.DisposeAsync();
        _state.Dispose();
    }

    [Fact]
    public async Task A_create_runs_on_the_tier_it_asks_for_and_says_so()
    {
        var plain = await CreateSandboxAsync(_daemon.Api);
        var chosen = await CreateSandboxAsync(_daemon.Api, """{"templateID":"base","isolation":"beta"}""");

        Assert.True(_alpha.IsAlive(plain) && !_beta.IsAlive(plain), "a create that chooses nothing runs on the default tier");
        Assert.True(_beta.IsAlive(chosen) && !_alpha.IsAlive(chosen), "a create that asks for beta runs on beta");
        Assert.Equal("beta", _beta.Started.Single(s => s.SandboxId == chosen).Isolation);

        Assert.Equal("alpha", Get<string>((await SendAsync(_daemon.Api, HttpMethod.Get, $"/sandboxes/{plain}")).Body!, "isolation"));
        Assert.Equal("beta", Get<string>((await SendAsync(_daemon.Api, HttpMethod.Get, $"/sandboxes/{chosen}")).Body!, "isolation"));
        var listed = (await SendAsync(_daemon.Api, HttpMethod.Get, "/v2/sandboxes")).Body!.AsArray();
        Assert.Equal("beta", listed.Single(s => Get<string>(s!, "sandboxID") == chosen)!["isolation"]!.GetValue<string>());

        // The proxy reaches each through its own tier: the agent's health answers on both.
        foreach (var id in new[] { plain, chosen })
        {
            using var health = new HttpRequestMessage(HttpMethod.Get, "/health");
            health.Headers.Add("E2b-Sandbox-Id", id);
            health.Headers.Add("E2b-Sandbox-Port", "49983");
            using var response = await _daemon.Raw.SendAsync(health);
            Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        }

        // A kill reaches the tier that runs it, and only that one.
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(_daemon.Api, HttpMethod.Delete, $"/sandboxes/{chosen}")).Status);
        Assert.False(_beta.IsAlive(chosen));
        Assert.True(_alpha.IsAlive(plain));
    }

    [Fact]
    public async Task Unknown_and_unavailable_tiers_are_refused_with_what_to_do()
    {
        var unknown = AssertError(HttpStatusCode.BadRequest,
            await SendAsync(_daemon.Api, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base","isolation":"kata"}"""));
        Assert.Contains("unknown isolation 'kata'", unknown, StringComparison.Ordinal);
        Assert.Contains("alpha, beta, gamma", unknown, StringComparison.Ordinal);

        var unavailable = AssertError(HttpStatusCode.ServiceUnavailable,
            await SendAsync(_daemon.Api, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base","isolation":"gamma"}"""));
        Assert.Contains("run scripts/setup", unavailable, StringComparison.Ordinal);

        AssertError(HttpStatusCode.BadRequest,
            await SendAsync(_daemon.Api, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base","isolation":"  "}"""));
        // The default tier still serves.
        Assert.True(_alpha.IsAlive(await CreateSandboxAsync(_daemon.Api)));
    }

    [Fact]
    public async Task A_team_bound_to_a_tier_gets_it_by_default_and_cannot_ask_for_another()
    {
        var (teamId, _, client) = await TeamWithClientAsync(_daemon, "\"isolation\":\"beta\"");
        using (client)
        {
            var team = (await SendAsync(_daemon.Api, HttpMethod.Get, "/teams")).Body!.AsArray().Single(t => Get<string>(t!, "teamID") == teamId)!;
            Assert.Equal("beta", team["limits"]!["isolation"]!.GetValue<string>());

            var id = await CreateSandboxAsync(client);
            Assert.True(_beta.IsAlive(id), "the team's binding overrides the daemon's default");
            var named = await CreateSandboxAsync(client, """{"templateID":"base","isolation":"beta"}""");
            Assert.True(_beta.IsAlive(named), "the team may name its own tier");

            var forbidden = AssertError(HttpStatusCode.Forbidden,
                await SendAsync(client, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base","isolation":"alpha"}"""));
            Assert.Contains("beta isolation tier only", forbidden, StringComparison.Ordinal);

            // Only a known tier binds; null lifts the binding.
            AssertError(HttpStatusCode.BadRequest, await SendAsync(_daemon.Api, HttpMethod.Patch, $"/teams/{teamId}", """{"isolation":"kata"}"""));
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(_daemon.Api, HttpMethod.Patch, $"/teams/{teamId}", """{"isolation":null}""")).Status);
            Assert.True(_alpha.IsAlive(await CreateSandboxAsync(client, """{"templateID":"base","isolation":"alpha"}""")));
        }
    }
}
