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
}
