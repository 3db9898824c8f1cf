using System.Globalization;
using System.Net;
using System.Text;

namespace Paddock.Daemon.Networking;

/// <summary>
/// The nftables scripts (nft -f) of one daemon's table. Everything lives in one <c>inet</c> table of its own, so
/// that removing it removes all of it, and base chains of other tables (the host's firewall) are left as they are.
/// </summary>
/// <remarks>
/// Guards, whatever the policies: a sandbox link may send to the host itself only what was redirected to the egress
/// proxy (input hook), never to another sandbox link, nothing over IPv6, nothing from an address that is not its own,
/// and nothing may come in on a link unless it answers a connection the sandbox opened (forward hook). A link the
/// table does not know (not in <c>links</c>) is dropped. Per link, chain <c>f{slot}</c> applies the policy to every
/// packet the sandbox forwards, so a policy change also cuts connections that are open already; chain <c>n{slot}</c>
/// redirects ports 80 and 443 of denied destinations to the proxy when the policy has a domain allowlist. DNS to
/// <see cref="ResolverAddress"/> (UDP and TCP port 53) is redirected to the daemon's <see cref="DnsForwarder"/>
/// for every link, before any policy: the forwarder answers by the policy itself.
/// A link's attach (when its <c>n{slot}</c> chain stays empty) and its detach go as nf_tables netlink batches
/// instead (<see cref="NftNetlink"/>), the same rules without an nft process.
/// What the rules drop for a policy (a denied destination) or a guard (the host, another sandbox) is first logged to
/// the NFLOG group of the daemon's <see cref="ConnectionObserver"/>, at most <see cref="LogRate"/> packets a second
/// (burst <see cref="LogBurst"/>) per rule: above that the packets are still dropped, unlogged, so a sandbox that
/// sends a flood cannot make the daemon read (or the audit trail keep) more than that.
/// </remarks>
internal sealed class NftRules
{
    private readonly string _table;
    private readonly string _prefix;
    private readonly IpNetwork _pool;

    public NftRules(string table, string interfacePrefix, IpNetwork pool)
    {
        _table = table;
        _prefix = interfacePrefix;
        _pool = pool;
    }

    /// <summary>
    /// The address sandboxes send DNS to: the pool's second address, which belongs to slot 0, and no link is ever
    /// given slot 0 (<see cref="SandboxNetworks"/>), so it is no sandbox's and no host end's. One address for all
    /// sandboxes lets a tier write /etc/resolv.conf before the sandbox's link exists.
    /// </summary>
    public IPAddress ResolverAddress => IpNetwork.ToAddress(_pool.Address + 1);

    /// <summary>Dropped packets logged per second and rule at most (nft <c>limit</c>); the daemon then folds retries of one flow into one event.</summary>
    public const int LogRate = 20;

    /// <summary>The burst the <see cref="LogRate"/> limit allows.</summary>
    public const int LogBurst = 100;

    private static string Log(int logGroup) =>
        $"limit rate {LogRate.ToString(CultureInfo.InvariantCulture)}/second burst {LogBurst.ToString(CultureInfo.InvariantCulture)} packets log group {logGroup.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>The whole table from scratch (after deleting any earlier one), with no links.</summary>
    public string Base(int proxyPort, int dnsPort, int logGroup)
    {
        var log = Log(logGroup);
        var p = proxyPort.ToString(CultureInfo.InvariantCulture);
        var d = dnsPort.ToString(CultureInfo.InvariantCulture);
        var resolver = ResolverAddress.ToString();
        return $$"""
            table inet {{_table}} {
              map links { type ifname : verdict; }
              map nat_links { type ifname : verdict; }
              chain guard_prerouting {
                type filter hook prerouting priority -300; policy accept;
                iifname "{{_prefix}}*" fib saddr . iif oif missing drop
              }
              chain guard_input {
                type filter hook input priority -10; policy accept;
                iifname "{{_prefix}}*" ct state established,related accept
                iifname "{{_prefix}}*" meta nfproto ipv4 tcp dport {{p}} ct status dnat accept
                iifname "{{_prefix}}*" meta nfproto ipv4 meta l4proto { tcp, udp } th dport {{d}} ct status dnat accept
                iifname "{{_prefix}}*" meta nfproto ipv4 {{log}}
                iifname "{{_prefix}}*" drop
              }
              chain guard_forward {
                type filter hook forward priority -10; policy accept;
                iifname "{{_prefix}}*" oifname "{{_prefix}}*" meta nfproto ipv4 {{log}}
                iifname "{{_prefix}}*" oifname "{{_prefix}}*" drop
                oifname "{{_prefix}}*" ct state established,related accept
                oifname "{{_prefix}}*" drop
                iifname "{{_prefix}}*" meta nfproto ipv6 drop
                iifname "{{_prefix}}*" iifname vmap @links
                iifname "{{_prefix}}*" drop
              }
              chain nat_prerouting {
                type nat hook prerouting priority dstnat; policy accept;
                iifname "{{_prefix}}*" ip daddr {{resolver}} meta l4proto { tcp, udp } th dport 53 redirect to :{{d}}
                iifname "{{_prefix}}*" iifname vmap @nat_links
              }
              chain nat_postrouting {
                type nat hook postrouting priority srcnat; policy accept;
                ip saddr {{_pool}} oifname != "{{_prefix}}*" masquerade
              }
            }

            """;
    }

    /// <summary>
    /// Adds (or replaces the rules of) one link. It fails when the table or its maps are missing (someone flushed
    /// the ruleset): a link is never added to a table without its guards.
    /// </summary>
    public string Attach(SandboxLink link, int proxyPort, int logGroup)
    {
        var s = new StringBuilder();
        s.Append(CultureInfo.InvariantCulture, $"add chain inet {_table} f{link.Slot}\nadd chain inet {_table} n{link.Slot}\n");
        Policy(s, link, proxyPort, logGroup);
        s.Append(CultureInfo.InvariantCulture, $"add element inet {_table} links {{ \"{link.HostInterface}\" : jump f{link.Slot} }}\n");
        s.Append(CultureInfo.InvariantCulture, $"add element inet {_table} nat_links {{ \"{link.HostInterface}\" : jump n{link.Slot} }}\n");
        return s.ToString();
    }

    /// <summary>Replaces the policy rules of a link that is attached; the whole script is one transaction.</summary>
    public string Update(SandboxLink link, int proxyPort, int logGroup)
    {
        var s = new StringBuilder();
        Policy(s, link, proxyPort, logGroup);
        return s.ToString();
    }

    public string DeleteTable() => $"add table inet {_table}\ndelete table inet {_table}\n";

    private void Policy(StringBuilder s, SandboxLink link, int proxyPort, int logGroup)
    {
        var t = _table;
        var f = $"f{link.Slot.ToString(CultureInfo.InvariantCulture)}";
        var n = $"n{link.Slot.ToString(CultureInfo.InvariantCulture)}";
        var policy = link.Policy;
        s.Append(CultureInfo.InvariantCulture, $"flush chain inet {t} {f}\nflush chain inet {t} {n}\n");
        s.Append(CultureInfo.InvariantCulture, $"add rule inet {t} {f} ip saddr != {Address(link.SandboxAddress)} drop\n");
        foreach (var net in policy.AllowOut)
        {
            s.Append(CultureInfo.InvariantCulture, $"add rule inet {t} {f} ip daddr {net} accept\n");
        }
        foreach (var net in policy.DenyOut)
        {
            s.Append(CultureInfo.InvariantCulture, $"add rule inet {t} {f} ip daddr {net} {Log(logGroup)}\n");
            s.Append(CultureInfo.InvariantCulture, $"add rule inet {t} {f} ip daddr {net} drop\n");
        }
        s.Append(CultureInfo.InvariantCulture, $"add rule inet {t} {f} accept\n");

        if (policy.AllowDomains.Count > 0 && policy.DenyOut.Count > 0)
        {
            // Allowed addresses go straight out; denied ones on 80/443 go to the proxy, which lets a listed name through.
            foreach (var net in policy.AllowOut)
            {
                s.Append(CultureInfo.InvariantCulture, $"add rule inet {t} {n} ip daddr {net} return\n");
            }
            foreach (var net in policy.DenyOut)
            {
                s.Append(CultureInfo.InvariantCulture, $"add rule inet {t} {n} ip daddr {net} tcp dport {{ 80, 443 }} redirect to :{proxyPort.ToString(CultureInfo.InvariantCulture)}\n");
            }
        }
    }

    private static string Address(IPAddress a) => a.ToString();
}
