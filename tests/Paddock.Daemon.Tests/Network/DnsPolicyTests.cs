using System.Net;
using Microsoft.Extensions.Configuration;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Tests.Network;

/// <summary>Which names a policy lets the sandbox's resolver answer, the wire pieces the forwarder writes, and its settings.</summary>
public sealed class DnsPolicyTests
{
    [Fact]
    public void A_policy_that_denies_by_default_resolves_only_its_listed_names()
    {
        var listed = EgressPolicy.From(false, ["allowed.test", "*.wild.test", "203.0.113.7"], null);
        Assert.True(listed.ResolvesName("allowed.test"));
        Assert.True(listed.ResolvesName("a.b.wild.test"));
        Assert.False(listed.ResolvesName("wild.test"));
        Assert.False(listed.ResolvesName("evil.test"));
        Assert.False(listed.ResolvesName("allowed.test.evil.test"));
        Assert.False(listed.ResolvesName(null));

        // Addresses only, deny by default: no name at all (a question could carry data out).
        Assert.False(EgressPolicy.From(null, ["203.0.113.7"], ["0.0.0.0/0"]).ResolvesName("allowed.test"));
        Assert.False(EgressPolicy.DenyAll.ResolvesName("allowed.test"));
        // Allow by default (open, or only some CIDRs denied): every name, host name or not.
        Assert.True(EgressPolicy.AllowAll.ResolvesName("evil.test"));
        Assert.True(EgressPolicy.AllowAll.ResolvesName(null));
        Assert.True(EgressPolicy.From(null, null, ["198.51.100.0/24"]).ResolvesName("evil.test"));
    }

    [Fact]
    public void A_question_is_read_only_when_it_is_one_plain_name()
    {
        var question = DnsWire.Question("Allowed.Test", DnsWire.TypeA);
        var query = DnsWire.Query(0x1234, question);

        Assert.True(DnsWire.TryReadQuestion(query, out var read));
        Assert.Equal(new DnsQuestion(question.Length, "allowed.test", DnsWire.TypeA, DnsWire.ClassIn), read);
        Assert.Equal(0x1234, DnsWire.Id(query));
        Assert.Equal(1, DnsWire.QuestionCount(query));

        // A compression pointer, a name over 255 bytes, a question cut short: not read.
        Assert.False(DnsWire.TryReadQuestion([.. query[..12], 0xc0, 0x0c, 0, 1, 0, 1], out _));
        var longName = string.Join('.', Enumerable.Repeat(new string('a', 63), 5));
        Assert.False(DnsWire.TryReadQuestion([.. query[..12], .. DnsWire.Question(longName, 1)], out _));
        Assert.False(DnsWire.TryReadQuestion(query[..(12 + question.Length - 1)], out _));
        // Bytes that are no host name's: read, but with no name (so on no allowlist).
        Assert.True(DnsWire.TryReadQuestion([.. query[..12], 3, (byte)'a', 0, (byte)'b', 0, 0, 1, 0, 1], out var odd));
        Assert.Null(odd.Name);
    }

    [Fact]
    public void An_answer_made_here_echoes_the_id_opcode_RD_and_question()
    {
        var question = DnsWire.Question("evil.test", DnsWire.TypeA);
        var query = DnsWire.Query(0xbeef, question);

        var answer = DnsWire.Response(query, question.Length, DnsWire.RcodeNxDomain);

        var message = ARSoft.Tools.Net.Dns.DnsMessage.Parse(new ArraySegment<byte>(answer));
        Assert.Equal(0xbeef, message.TransactionID);
        Assert.False(message.IsQuery);
        Assert.True(message.IsRecursionDesired);
        Assert.Equal(ARSoft.Tools.Net.Dns.ReturnCode.NxDomain, message.ReturnCode);
        Assert.Equal("evil.test.", message.Questions.Single().Name.ToString());
        Assert.Empty(message.AnswerRecords);
        Assert.True(DnsWire.IsTruncated(DnsWire.Response(query, question.Length, DnsWire.RcodeNoError, truncated: true)));
    }

    [Fact]
    public void The_daemons_resolvers_come_from_the_setting_else_resolv_conf()
    {
        var resolvConf = Path.GetTempFileName();
        try
        {
            File.WriteAllText(resolvConf, "# comment\nsearch example\nnameserver 192.0.2.53\nnameserver ::1\nnameserver\t198.51.100.53 # x\noptions edns0\n");
            Assert.Equal([new IPEndPoint(IPAddress.Parse("192.0.2.53"), 53), new IPEndPoint(IPAddress.Parse("198.51.100.53"), 53)],
                DaemonResolver.ServersFrom([], resolvConf));
            Assert.Equal([new IPEndPoint(IPAddress.Parse("10.0.0.1"), 5353), new IPEndPoint(IPAddress.Parse("10.0.0.2"), 53)],
                DaemonResolver.ServersFrom(["10.0.0.1:5353", " 10.0.0.2 "], resolvConf));
            Assert.Empty(DaemonResolver.ServersFrom([], resolvConf + ".missing"));
            var bad = Assert.Throws<FormatException>(() => DaemonResolver.ServersFrom(["resolver.example"], resolvConf));
            Assert.Contains("resolver.example", bad.Message, StringComparison.Ordinal);
            Assert.Throws<FormatException>(() => DaemonResolver.ServersFrom(["::1"], resolvConf));
        }
        finally
        {
            File.Delete(resolvConf);
        }
    }

    [Fact]
    public void DnsServers_and_DnsPort_are_read_from_configuration()
    {
        var list = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["DnsServers:0"] = "192.0.2.1",
            ["DnsServers:1"] = "192.0.2.2:5353",
            ["DnsPort"] = "5300",
        }).Build();
        var options = RuntimeServiceCollectionExtensions.ReadNetworkOptions(list, "/var/lib/paddock", "/var/lib/paddock")!;
        Assert.Equal(["192.0.2.1", "192.0.2.2:5353"], options.DnsServers);
        Assert.Equal(5300, options.DnsPort);

        var commas = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["DnsServers"] = "192.0.2.1, 192.0.2.2" }).Build();
        Assert.Equal(["192.0.2.1", "192.0.2.2"], RuntimeServiceCollectionExtensions.ReadNetworkOptions(commas, "/var/lib/paddock", "/var/lib/paddock")!.DnsServers);
        Assert.Empty(RuntimeServiceCollectionExtensions.ReadNetworkOptions(new ConfigurationBuilder().Build(), "/var/lib/paddock", "/var/lib/paddock")!.DnsServers);
    }
}
