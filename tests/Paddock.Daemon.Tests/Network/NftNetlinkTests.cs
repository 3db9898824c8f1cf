using System.Globalization;
using System.Net;
using Paddock.Daemon.Native;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Tests.Runtimes;

namespace Paddock.Daemon.Tests.Network;

/// <summary>
/// The netlink form of a link's rules (<see cref="NftNetlink"/>, the cold path) against the nft script it replaces
/// (<see cref="NftRules.Attach"/>): each is applied to a fresh table of its own, and nft must list the same rules and
/// map elements for both. No sandbox and no traffic: the egress tests check what the rules do.
/// </summary>
public sealed class NftNetlinkTests
{
    private static readonly int Pid = Environment.ProcessId;
    private static readonly IpNetwork Pool = IpNetwork.Parse("10.206.0.0/24");

    public static TheoryData<string, string[], string[]> Policies => new()
    {
        { "allow-all", [], [] },
        { "deny-all", [], ["0.0.0.0/0"] },
        { "cidrs", ["10.1.2.0/24", "1.1.1.1/32", "172.16.0.0/12"], ["10.0.0.0/8", "0.0.0.0/0"] },
    };

    [Theory]
    [MemberData(nameof(Policies))]
    public async Task Netlink_rules_list_as_the_nft_script_does(string name, string[] allow, string[] deny)
    {
        var policy = new EgressPolicy
        {
            AllowOut = allow.Select(IpNetwork.Parse).ToList(),
            DenyOut = deny.Select(IpNetwork.Parse).ToList(),
        };
        var prefix = $"pn{Pid % 1_000_000}";
        var link = new SandboxLink("sandbox", 7, prefix + "7", IPAddress.Parse("10.206.0.14"), IPAddress.Parse("10.206.0.15"), policy);
        var viaNetlink = $"paddock_test_nl_{Pid}_{name.Replace('-', '_')}";
        var viaScript = $"paddock_test_nft_{Pid}_{name.Replace('-', '_')}";
        var rules = new NftRules(viaNetlink, prefix, Pool);
        var scriptRules = new NftRules(viaScript, prefix, Pool);
        try
        {
            await NftAsync(rules.DeleteTable() + rules.Base(3128, 5353, 4242));
            await NftAsync(scriptRules.DeleteTable() + scriptRules.Base(3128, 5353, 4242));

            NftNetlink.Attach(viaNetlink, link, 4242);
            await NftAsync(scriptRules.Attach(link, 3128, 4242));

            Assert.Equal(await ListAsync(viaScript), await ListAsync(viaNetlink));
            Assert.Contains($"\"{link.HostInterface}\" : jump f7", await ListAsync(viaNetlink));
        }
        finally
        {
            await NftAsync(rules.DeleteTable() + scriptRules.DeleteTable());
        }
    }

    [Fact]
    public async Task Detach_leaves_the_table_as_it_was_and_may_run_twice_or_for_a_link_never_attached()
    {
        var table = $"paddock_test_nl_detach_{Pid}";
        var prefix = $"pd{Pid % 1_000_000}";
        var rules = new NftRules(table, prefix, Pool);
        var link = new SandboxLink("sandbox", 3, prefix + "3", IPAddress.Parse("10.206.0.6"), IPAddress.Parse("10.206.0.7"), EgressPolicy.DenyAll);
        try
        {
            await NftAsync(rules.DeleteTable() + rules.Base(3128, 5353, 4242));
            var empty = await ListAsync(table);
            NftNetlink.Attach(table, link, 4242);
            Assert.NotEqual(empty, await ListAsync(table));

            NftNetlink.Detach(table, link.Slot, link.HostInterface);
            Assert.Equal(empty, await ListAsync(table));
            NftNetlink.Detach(table, link.Slot, link.HostInterface);
            NftNetlink.Detach(table, 4, prefix + "4");
            Assert.Equal(empty, await ListAsync(table));
        }
        finally
        {
            await NftAsync(rules.DeleteTable());
        }
    }

    [Fact]
    public async Task A_missing_table_is_ENOENT_and_applies_nothing()
    {
        var table = $"paddock_test_nl_missing_{Pid}";
        var rules = new NftRules(table, "pm", Pool);
        await NftAsync(rules.DeleteTable());
        var link = new SandboxLink("sandbox", 1, "pm1", IPAddress.Parse("10.206.0.2"), IPAddress.Parse("10.206.0.3"), EgressPolicy.AllowAll);

        var error = Assert.Throws<IOException>(() => NftNetlink.Attach(table, link, 4242));

        Assert.Equal(Errno.ENOENT, error.HResult);
        Assert.Equal(Errno.ENOENT, Assert.Throws<IOException>(() => NftNetlink.Detach(table, 1, "pm1")).HResult);
        var tables = await ExternalCommand.RunAsync("nft", ["list", "tables"], TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
        Assert.DoesNotContain(table, tables.StandardOutput);
    }

    [Fact]
    public void A_domain_allowlist_beside_a_deny_list_is_left_to_the_nft_script()
    {
        var policy = new EgressPolicy { DenyOut = [IpNetwork.Parse("0.0.0.0/0")], AllowDomains = ["example.com"] };
        var link = new SandboxLink("sandbox", 1, "pm1", IPAddress.Parse("10.206.0.2"), IPAddress.Parse("10.206.0.3"), policy);

        Assert.False(NftNetlink.CanAttach(link));
        Assert.True(NftNetlink.CanAttach(link with { Policy = EgressPolicy.DenyAll }));
        Assert.Throws<ArgumentException>(() => NftNetlink.Attach("unused", link, 4242));
    }

    /// <summary>The table as nft lists it, without its name line (the two tables differ only there).</summary>
    private static async Task<string> ListAsync(string table)
    {
        var result = await ExternalCommand.RunAsync("nft", ["list", "table", "inet", table], TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
        Assert.True(result.Succeeded, result.Describe());
        return string.Join('\n', result.StandardOutput.Split('\n').Skip(1));
    }

    private static async Task NftAsync(string script)
    {
        var file = Path.Combine(Path.GetTempPath(), $"paddock-nft-test-{Pid}-{Guid.NewGuid():N}");
        await File.WriteAllTextAsync(file, script);
        try
        {
            var result = await ExternalCommand.RunAsync("nft", ["-f", file], TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
            Assert.True(result.Succeeded, result.Describe());
        }
        finally
        {
            File.Delete(file);
        }
    }
}
