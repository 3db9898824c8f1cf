using System.Net;
using Paddock.Daemon.Networking;

namespace Paddock.Daemon.Tests.Network;

public sealed class EgressPolicyTests
{
    [Fact]
    public void Allow_entries_win_over_deny_entries_as_in_E2B()
    {
        var policy = EgressPolicy.From(null, ["10.1.2.3", "10.9.0.0/16"], ["10.0.0.0/8"]);

        Assert.True(policy.AllowsAddress(IPAddress.Parse("10.1.2.3")));
        Assert.True(policy.AllowsAddress(IPAddress.Parse("10.9.200.1")));
        Assert.False(policy.AllowsAddress(IPAddress.Parse("10.1.2.4")));
        Assert.True(policy.AllowsAddress(IPAddress.Parse("192.0.2.7")));
    }

    [Fact]
    public void No_internet_access_is_deny_all()
    {
        var policy = EgressPolicy.From(false, null, null);

        Assert.True(policy.DeniesEverything);
        Assert.False(policy.AllowsAddress(IPAddress.Parse("198.51.100.1")));
        Assert.False(EgressPolicy.AllowAll.DeniesEverything);
        Assert.True(EgressPolicy.AllowAll.AllowsAddress(IPAddress.Parse("198.51.100.1")));
    }

    [Fact]
    public void Domains_in_allowOut_match_exactly_or_by_wildcard_suffix()
    {
        var policy = EgressPolicy.From(false, ["Example.COM.", "*.pypi.org"], null);

        Assert.Equal(["example.com", "*.pypi.org"], policy.AllowDomains);
        Assert.True(policy.AllowsHost("example.com"));
        Assert.True(policy.AllowsHost("EXAMPLE.com"));
        Assert.False(policy.AllowsHost("www.example.com"));
        Assert.False(policy.AllowsHost("badexample.com"));
        Assert.True(policy.AllowsHost("files.pypi.org"));
        Assert.False(policy.AllowsHost("pypi.org"));
        Assert.False(policy.AllowsHost("evilpypi.org"));
        Assert.False(policy.AllowsHost("10.0.0.1"));
    }

    [Theory]
    [InlineData("300.1.1.1")]
    [InlineData("1.2.3.4/33")]
    [InlineData("exa mple.com")]
    [InlineData("-bad.com")]
    [InlineData("::1")]
    public void Malformed_allow_entries_are_refused(string entry) =>
        Assert.Throws<FormatException>(() => EgressPolicy.From(null, [entry], null));

    [Fact]
    public void Names_cannot_be_denied()
    {
        var error = Assert.Throws<FormatException>(() => EgressPolicy.From(null, null, ["example.com"]));
        Assert.Contains("denyOut", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cidrs_are_normalised_to_their_network()
    {
        Assert.Equal("10.1.0.0/16", IpNetwork.Parse("10.1.2.3/16").ToString());
        Assert.Equal("8.8.8.8/32", IpNetwork.Parse("8.8.8.8").ToString());
        Assert.False(IpNetwork.TryParse("1", out _));
    }
}

public sealed class HostNameSnifferTests
{
    [Fact]
    public void Reads_the_server_name_of_a_ClientHello()
    {
        var hello = ClientHello.Build("allowed.test");

        Assert.Equal(SniffResult.Found, HostNameSniffer.Sniff(hello, out var host));
        Assert.Equal("allowed.test", host);
        Assert.Equal(SniffResult.NeedMore, HostNameSniffer.Sniff(hello.AsSpan(0, hello.Length - 1), out _));
        Assert.Equal(SniffResult.NoName, HostNameSniffer.Sniff(ClientHello.Build(null), out _));
    }

    [Fact]
    public void A_malformed_ClientHello_is_invalid()
    {
        var hello = ClientHello.Build("allowed.test");
        hello[5] = 2; // server_hello instead of client_hello

        Assert.Equal(SniffResult.Invalid, HostNameSniffer.Sniff(hello, out _));
    }

    [Fact]
    public void Reads_the_Host_header_without_its_port()
    {
        var request = "GET /x HTTP/1.1\r\nUser-Agent: t\r\nhOsT: Allowed.test:8080\r\n\r\n"u8.ToArray();

        Assert.Equal(SniffResult.Found, HostNameSniffer.Sniff(request, out var host));
        Assert.Equal("Allowed.test", host);
        Assert.Equal(SniffResult.NeedMore, HostNameSniffer.Sniff(request.AsSpan(0, 20), out _));
        Assert.Equal(SniffResult.NoName, HostNameSniffer.Sniff("GET / HTTP/1.0\r\n\r\n"u8, out _));
        Assert.Equal(SniffResult.Invalid, HostNameSniffer.Sniff("GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"u8, out _));
        Assert.Equal(SniffResult.Invalid, HostNameSniffer.Sniff("\u0001garbage"u8, out _));
    }
}
