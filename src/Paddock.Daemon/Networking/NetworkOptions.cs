namespace Paddock.Daemon.Networking;

/// <summary>
/// Settings of sandbox egress (configuration section <c>Runc:Network</c>). Several daemons (or test runs) on one host
/// must each use their own <see cref="TableName"/>, <see cref="InterfacePrefix"/> and <see cref="Pool"/>: a daemon
/// treats everything under its table and prefix as its own and removes what it does not know at start.
/// </summary>
internal sealed record NetworkOptions
{
    /// <summary>The private range sandbox links are cut from: a /31 per sandbox (RFC 3021), host end even, sandbox odd.</summary>
    public string Pool { get; init; } = "10.201.0.0/16";

    /// <summary>
    /// Set only when <see cref="Pool"/> was derived from the state directory, not configured: the range in which the
    /// daemon may take another block of the pool's size when another daemon on the host holds it (<see cref="AddressPoolClaim"/>).
    /// </summary>
    public string? PoolRange { get; init; }

    /// <summary>The nftables table (family inet) that holds every rule of this daemon, and nothing else.</summary>
    public string TableName { get; init; } = "paddock";

    /// <summary>Host-side veth names are this prefix and a slot number; at most 9 characters, so that names fit IFNAMSIZ.</summary>
    public string InterfacePrefix { get; init; } = "pdk";

    /// <summary>
    /// The port of the egress proxy that reads HTTP Host and TLS SNI for domain allowlists; 0 picks a free one at start.
    /// Only connections redirected to it from sandbox links are accepted there (nftables <c>ct status dnat</c>).
    /// </summary>
    public int ProxyPort { get; init; }

    /// <summary>The nft(8) executable (links, addresses and routes are made over rtnetlink, with no program).</summary>
    public string NftBinary { get; init; } = "nft";

    /// <summary>How long the proxy waits for a sandbox to send the Host header or the TLS ClientHello.</summary>
    public TimeSpan ProxyHandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long the proxy waits for the onward TCP connection.</summary>
    public TimeSpan ProxyConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The port of the sandboxes' DNS forwarder (UDP and TCP); 0 picks a free one at start. Sandboxes reach it as
    /// <see cref="SandboxNetworks.ResolverAddress"/> port 53, which nftables redirects here.
    /// </summary>
    public int DnsPort { get; init; }

    /// <summary>
    /// The daemon's own resolvers ("ADDRESS" or "ADDRESS:PORT", IPv4), used by the DNS forwarder and by the egress
    /// proxy to find where an allowed name goes. Empty: the <c>nameserver</c> lines of /etc/resolv.conf.
    /// </summary>
    public IReadOnlyList<string> DnsServers { get; init; } = [];

    /// <summary>How long one query to the daemon's resolvers may take before the sandbox gets SERVFAIL.</summary>
    public TimeSpan DnsTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>The longest the proxy keeps a name's addresses, whatever TTL the answer gave (short, so a moved service is followed soon).</summary>
    public TimeSpan DnsCacheMaxTtl { get; init; } = TimeSpan.FromSeconds(60);
}
