using Microsoft.AspNetCore.Http;
using Paddock.Daemon.Proxy;

namespace Paddock.Daemon.Tests.Proxy;

public sealed class SandboxRoutingTests
{
    private static SandboxRouting.Result Route(string host, params (string Name, string Value)[] headers)
    {
        var http = new DefaultHttpContext();
        http.Request.Host = HostString.FromUriComponent(host);
        foreach (var (name, value) in headers)
        {
            http.Request.Headers[name] = value;
        }
        return SandboxRouting.Route(http.Request, "localhost");
    }

    [Fact]
    public void Host_names_from_getHost_route_to_that_sandbox_port()
    {
        var result = Route("8000-abc123.localhost:3000");
        Assert.Equal(SandboxRouting.Kind.Sandbox, result.Kind);
        Assert.Equal(new SandboxTarget("abc123", 8000), result.Target);
        Assert.Equal(new SandboxTarget("abc123", 49983), Route("49983-ABC123.LOCALHOST").Target);
    }

    [Theory]
    [InlineData("127.0.0.1:3000")]
    [InlineData("localhost:3000")]
    [InlineData("8000-abc.example.com")]
    [InlineData("8000-abc.localhost.evil")]
    [InlineData("x-abc.localhost")]
    [InlineData("0-abc.localhost")]
    [InlineData("70000-abc.localhost")]
    [InlineData("8000-.localhost")]
    [InlineData("8000-a_b.localhost")]
    public void Other_hosts_are_control_plane_traffic(string host) =>
        Assert.Equal(SandboxRouting.Kind.ControlPlane, Route(host).Kind);

    [Fact]
    public void The_sandbox_headers_route_whatever_the_host()
    {
        var result = Route("127.0.0.1:3000", ("E2b-Sandbox-Id", "abc"), ("E2b-Sandbox-Port", "49983"));
        Assert.Equal(new SandboxTarget("abc", 49983), result.Target);
        Assert.Equal(SandboxRouting.Kind.Invalid, Route("h", ("E2b-Sandbox-Id", "abc")).Kind);
        Assert.Equal(SandboxRouting.Kind.Invalid, Route("h", ("E2b-Sandbox-Id", "abc"), ("E2b-Sandbox-Port", "99999")).Kind);
        Assert.Equal(SandboxRouting.Kind.Invalid, Route("h", ("E2b-Sandbox-Id", "../x"), ("E2b-Sandbox-Port", "1")).Kind);
    }

    [Fact]
    public void The_forwarders_authority_carries_the_sandbox_id_and_port()
    {
        var prefix = SandboxHttpClient.DestinationPrefix(new SandboxTarget("abc", 8000));
        var uri = new Uri(prefix);
        Assert.Equal(8000, uri.Port);
        Assert.Equal("abc", SandboxHttpClient.SandboxIdFromHost(uri.Host));
        Assert.Throws<InvalidOperationException>(() => SandboxHttpClient.SandboxIdFromHost("example.com"));
    }
}
