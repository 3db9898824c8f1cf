using System.Net;
using System.Text;
using Paddock.Agent.Init;
using Paddock.Agent.Tests.Connect;
using Paddock.Agent.Tests.Processes;
using Paddock.Envd.Process;

namespace Paddock.Agent.Tests.Init;

/// <summary>envd's POST /init against a real agent: variables for later processes, the token, and its own auth.</summary>
public sealed class InitTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private static async Task<HttpResponseMessage> InitAsync(AgentProcess agent, string json, string? token = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/init") { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (token is not null)
        {
            request.Headers.Add("X-Access-Token", token);
        }
        return await agent.Http.SendAsync(request).WaitAsync(Wait);
    }

    private static async Task<string> RunEnvAsync(AgentProcess agent, string? token)
    {
        using var http = new HttpClient { BaseAddress = agent.Http.BaseAddress, Timeout = Wait };
        if (token is not null)
        {
            http.DefaultRequestHeaders.Add("X-Access-Token", token);
        }
        using var cts = new CancellationTokenSource(Wait);
        var request = new StartRequest { Process = new ProcessConfig { Cmd = "env" }, Stdin = false };
        await using var run = await ProcessRun.StartAsync(new ConnectClient(http), request, cts.Token);
        await run.WaitEndAsync(cts.Token);
        return run.StdoutText;
    }

    [Fact]
    public async Task Init_sets_the_variables_every_later_process_starts_with_and_the_token_it_then_requires()
    {
        await using var agent = await AgentProcess.StartAsync().WaitAsync(Wait);

        using (var response = await InitAsync(agent, """{"envVars":{"TEAM":"blue","MODE":"pooled"},"accessToken":"tok-1","timestamp":"2026-11-28T10:00:00Z"}"""))
        {
            Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        }

        using (var refused = await agent.Http.GetAsync("/envs").WaitAsync(Wait))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        }
        var env = await RunEnvAsync(agent, "tok-1");
        Assert.Contains("TEAM=blue\n", env, StringComparison.Ordinal);
        Assert.Contains("MODE=pooled\n", env, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Once_a_token_is_set_init_itself_needs_it()
    {
        await using var agent = await AgentProcess.StartAsync("--access-token", "pool-secret").WaitAsync(Wait);

        using (var anonymous = await InitAsync(agent, """{"accessToken":"mine"}"""))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        }
        using (var wrong = await InitAsync(agent, """{"accessToken":"mine"}""", token: "guess"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        }
        using (var right = await InitAsync(agent, """{"accessToken":"mine","envVars":{"A":"1"}}""", token: "pool-secret"))
        {
            Assert.Equal(HttpStatusCode.NoContent, right.StatusCode);
        }
        // The old token no longer opens anything; the new one does.
        using (var old = await InitAsync(agent, """{"envVars":{"B":"2"}}""", token: "pool-secret"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, old.StatusCode);
        }
        Assert.Contains("A=1\n", await RunEnvAsync(agent, "mine"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_empty_access_token_removes_the_requirement()
    {
        await using var agent = await AgentProcess.StartAsync("--access-token", "pool-secret").WaitAsync(Wait);
        using (var response = await InitAsync(agent, """{"accessToken":""}""", token: "pool-secret"))
        {
            Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        }
        using var envs = await agent.Http.GetAsync("/envs").WaitAsync(Wait);
        Assert.Equal(HttpStatusCode.OK, envs.StatusCode);
    }

    [Fact]
    public async Task A_refused_body_changes_nothing()
    {
        await using var agent = await AgentProcess.StartAsync().WaitAsync(Wait);
        // A valid variable next to an invalid one: the request is refused whole.
        using (var response = await InitAsync(agent, """{"envVars":{"GOOD":"1","BAD=NAME":"x"},"accessToken":"t"}"""))
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Contains("BAD=NAME", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        using (var response = await InitAsync(agent, """{"defaultUser":"no-such-user-here"}"""))
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        }
        var env = await RunEnvAsync(agent, token: null);
        Assert.DoesNotContain("GOOD=", env, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("[1]")]
    [InlineData("""{"envVars":{"A":1}}""")]
    [InlineData("""{"envVars":[]}""")]
    [InlineData("""{"accessToken":5}""")]
    [InlineData("""{"volumeMounts":[{"nfsTarget":"x","path":"/mnt"}]}""")]
    [InlineData("""{"caBundle":"-----BEGIN CERTIFICATE-----"}""")]
    [InlineData("{not json")]
    public void Malformed_or_unsupported_bodies_are_refused_with_a_message(string json)
    {
        var error = Assert.Throws<InitRequestException>(() => InitRequest.Parse(Encoding.UTF8.GetBytes(json)));
        Assert.NotEmpty(error.Message);
    }

    [Fact]
    public void Absent_fields_leave_settings_alone_and_ignored_fields_are_accepted()
    {
        var request = InitRequest.Parse("""{"timestamp":"2026-11-28T10:00:00Z","hyperloopIP":"10.0.0.1","lifecycleID":"x","volumeMounts":[]}"""u8);
        Assert.Null(request.AccessToken);
        Assert.Null(request.DefaultUser);
        Assert.Empty(request.EnvVars);
    }
}
