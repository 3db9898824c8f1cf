using Microsoft.Extensions.Logging;

namespace Paddock.Daemon.Networking;

/// <summary>Log events of sandbox networking (ids 3400-3499).</summary>
internal static partial class NetworkLog
{
    [LoggerMessage(3400, LogLevel.Information, "Sandbox network ready: nftables table inet {Table}, pool {Pool}, egress proxy on port {ProxyPort}, sandbox resolver {Resolver} (DNS forwarder on port {DnsPort}), {Links} links re-adopted")]
    public static partial void Ready(ILogger logger, string table, string pool, int proxyPort, string resolver, int dnsPort, int links);

    [LoggerMessage(3401, LogLevel.Debug, "Sandbox {SandboxId} linked: {HostInterface} {HostAddress} <-> {SandboxAddress}")]
    public static partial void Attached(ILogger logger, string sandboxId, string hostInterface, string hostAddress, string sandboxAddress);

    [LoggerMessage(3402, LogLevel.Debug, "Sandbox {SandboxId} unlinked")]
    public static partial void Detached(ILogger logger, string sandboxId);

    [LoggerMessage(3403, LogLevel.Information, "Sandbox {SandboxId} egress policy changed")]
    public static partial void PolicyChanged(ILogger logger, string sandboxId);

    [LoggerMessage(3404, LogLevel.Warning, "The nftables table inet {Table} was gone (removed outside paddockd); rebuilt it with every link")]
    public static partial void TableRebuilt(ILogger logger, string table);

    [LoggerMessage(3410, LogLevel.Information, "Egress proxy: sandbox {SandboxId} to {Host} ({Destination}) refused: {Reason}")]
    public static partial void ProxyRefused(ILogger logger, string sandboxId, string host, string destination, string reason);

    [LoggerMessage(3411, LogLevel.Debug, "Egress proxy: sandbox {SandboxId} to {Host} ({Destination}) allowed")]
    public static partial void ProxyAllowed(ILogger logger, string sandboxId, string host, string destination);

    [LoggerMessage(3412, LogLevel.Debug, "Egress proxy: connection from {Source} dropped: {Reason}")]
    public static partial void ProxyDropped(ILogger logger, string source, string reason);

    [LoggerMessage(3413, LogLevel.Warning, "Egress proxy: accept failed")]
    public static partial void ProxyAcceptFailed(ILogger logger, Exception exception);

    [LoggerMessage(3420, LogLevel.Debug, "DNS forwarder: sandbox {SandboxId} asked for {Name} (type {Type}): {Reason}")]
    public static partial void DnsRefused(ILogger logger, string sandboxId, string name, int type, string reason);

    [LoggerMessage(3421, LogLevel.Warning, "DNS forwarder: receive failed")]
    public static partial void DnsReceiveFailed(ILogger logger, Exception exception);

    [LoggerMessage(3422, LogLevel.Warning, "DNS forwarder: no resolver for the daemon (no DnsServers setting and no IPv4 nameserver in /etc/resolv.conf); sandboxes get SERVFAIL for names their policy allows")]
    public static partial void DnsNoServers(ILogger logger);

    [LoggerMessage(3430, LogLevel.Information, "Connection observer: NFLOG group {Group}, conntrack events, byte accounting on")]
    public static partial void ObserverStarted(ILogger logger, int group);

    [LoggerMessage(3431, LogLevel.Warning, "Connection observer: the kernel dropped connection events (the reader fell behind; ENOBUFS); some connections are missing from audit trails")]
    public static partial void ConnectionEventsLost(ILogger logger);

    [LoggerMessage(3432, LogLevel.Warning, "Connection observer: receive failed: {Reason}")]
    public static partial void ConnectionReadFailed(ILogger logger, string reason);

    [LoggerMessage(3433, LogLevel.Warning, "Connection observer: a netlink message could not be read; skipped")]
    public static partial void ConnectionEventUnreadable(ILogger logger, Exception exception);

    [LoggerMessage(3434, LogLevel.Error, "Connection observer could not start: outbound connections are not audited")]
    public static partial void ObserverFailed(ILogger logger, Exception exception);

    [LoggerMessage(3435, LogLevel.Warning, "Connection observer: ending the flows of sandbox {SandboxId} failed")]
    public static partial void EndFlowsFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(3436, LogLevel.Warning, "Address pool {Pool} overlaps the pool of another paddockd on this host ({Blocks}): the two hand out the same sandbox addresses, and the host routes each such address to one of them only. Give each daemon its own Network:Pool")]
    public static partial void PoolShared(ILogger logger, string pool, string blocks);

    [LoggerMessage(3437, LogLevel.Information, "Address pool {Wanted} is held by another paddockd on this host; this daemon takes {Pool} instead (remembered in {File})")]
    public static partial void PoolMoved(ILogger logger, string wanted, string pool, string file);

    [LoggerMessage(3438, LogLevel.Warning, "Address pools cannot be claimed host-wide ({Directory}: {Reason}): another paddockd on this host with the same pool would reach this daemon's sandboxes' addresses")]
    public static partial void PoolClaimsUnavailable(ILogger logger, string directory, string reason);
}
