using System.Net;

namespace Paddock.Daemon.Networking;

/// <summary>
/// One outbound connection of a sandbox as the host's netfilter saw it (<see cref="ConnectionObserver"/>): never as
/// the sandbox reports it, so code inside the sandbox can neither hide nor forge one.
/// </summary>
internal sealed record ConnectionEvent
{
    public required string SandboxId { get; init; }

    public required DateTimeOffset At { get; init; }

    /// <summary>An attempt (a flow the host let through, or a packet it dropped), or the end of an allowed flow.</summary>
    public required ConnectionPhase Phase { get; init; }

    /// <summary>
    /// <see cref="ConnectionVerdicts.Allowed"/>, <see cref="ConnectionVerdicts.Denied"/> or
    /// <see cref="ConnectionVerdicts.Proxied"/> (sent to the egress proxy, which lets only listed names through).
    /// </summary>
    public required string Verdict { get; init; }

    /// <summary>"tcp", "udp", "icmp", or the IP protocol number.</summary>
    public required string Protocol { get; init; }

    public required IPAddress Destination { get; init; }

    /// <summary>The destination port (TCP, UDP); null for protocols without ports.</summary>
    public int? Port { get; init; }

    /// <summary>At the end of a flow: bytes the sandbox sent (IP packets, headers included, as conntrack counts them).</summary>
    public long? BytesOut { get; init; }

    /// <summary>At the end of a flow: bytes the sandbox received.</summary>
    public long? BytesIn { get; init; }

    /// <summary>At the end of a flow: how long it was known to conntrack (from its first packet to its end or the sandbox's).</summary>
    public TimeSpan? Duration { get; init; }

    /// <summary>Why, when it is not plain: "to the host", "to another sandbox", "ended by the sandbox's end".</summary>
    public string? Note { get; init; }
}

internal enum ConnectionPhase
{
    Attempt,
    End,
}

internal static class ConnectionVerdicts
{
    public const string Allowed = "allowed";
    public const string Denied = "denied";
    public const string Proxied = "proxied";
}

/// <summary>Where a <see cref="ConnectionObserver"/> delivers what it saw. Called on the observer's thread: must not block.</summary>
internal interface IConnectionSink
{
    void Observed(ConnectionEvent connection);
}
