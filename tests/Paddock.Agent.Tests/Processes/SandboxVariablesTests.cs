using Paddock.Agent.Processes;
using Paddock.Agent.Users;

namespace Paddock.Agent.Tests.Processes;

public sealed class SandboxVariablesTests
{
    private static readonly AgentUser User = new("user", 1000, 1000, "/home/user", "/bin/bash", []);

    [Fact]
    public void Sandbox_variables_from_the_host_reach_every_command_and_the_request_overrides_them()
    {
        var environment = new ProcessEnvironment("/usr/bin:/bin");
        environment.LoadSandboxVariables("""{"TEAM":"blue","MODE":"sandbox"}""");

        var env = environment.Build(User, terminal: false, new Dictionary<string, string> { ["MODE"] = "request" });

        Assert.Contains(new KeyValuePair<string, string>("TEAM", "blue"), env);
        Assert.Contains(new KeyValuePair<string, string>("MODE", "request"), env);
        Assert.DoesNotContain(new KeyValuePair<string, string>("MODE", "sandbox"), env);
    }

    [Theory]
    [InlineData("[1,2]")]
    [InlineData("""{"A":1}""")]
    [InlineData("""{"A=B":"x"}""")]
    [InlineData("{not json")]
    public void Malformed_sandbox_variables_are_refused_with_a_message(string json)
    {
        var environment = new ProcessEnvironment(null);
        var error = Assert.Throws<ArgumentException>(() => environment.LoadSandboxVariables(json));
        Assert.Contains("PADDOCK_AGENT_SANDBOX_ENV", error.Message, StringComparison.Ordinal);
    }
}
