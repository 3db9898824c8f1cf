using System.Text.Json;
using Paddock.Daemon.Pools;

namespace Paddock.Daemon.Tests.Pools;

public sealed class AgentInitTests
{
    [Fact]
    public void The_body_carries_the_variables_and_always_an_access_token()
    {
        using var secure = JsonDocument.Parse(AgentInit.Body(new Dictionary<string, string> { ["A"] = "1", ["B"] = "x\"y" }, "tok"));
        Assert.Equal("1", secure.RootElement.GetProperty("envVars").GetProperty("A").GetString());
        Assert.Equal("x\"y", secure.RootElement.GetProperty("envVars").GetProperty("B").GetString());
        Assert.Equal("tok", secure.RootElement.GetProperty("accessToken").GetString());

        // Without a token of its own the sandbox must not keep the pool's: an empty token removes it.
        using var open = JsonDocument.Parse(AgentInit.Body(new Dictionary<string, string>(), null));
        Assert.Equal("", open.RootElement.GetProperty("accessToken").GetString());
        Assert.Empty(open.RootElement.GetProperty("envVars").EnumerateObject());
    }
}
