using System.Net;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// Cluster mode (<c>--cluster</c>): this paddockd is one node of several that share one PostgreSQL store, each an
/// Orleans silo for membership and failure detection (Cluster/ClusterHosting.cs). Orleans never owns a container
/// or carries sandbox bytes: it says which nodes are alive, and a grain call asks a node about itself.
/// </summary>
internal sealed record ClusterSettings
{
    /// <summary>
    /// The node's identity, stable across restarts (a host name, a Kubernetes node name): the owner written on its
    /// sandboxes' records and the name of its silo. A node restarted with the same id re-adopts what it still runs.
    /// </summary>
    public required string NodeId { get; init; }

    /// <summary>The address the other nodes reach this one at: its silo listens there, and its API is forwarded to there.</summary>
    public required IPAddress AdvertiseAddress { get; init; }

    /// <summary>The Orleans silo-to-silo port on <see cref="AdvertiseAddress"/>.</summary>
    public int SiloPort { get; init; } = 11111;

    /// <summary>The Orleans cluster id: several clusters may share one database under different ids.</summary>
    public string ClusterId { get; init; } = "paddock";

    /// <summary>
    /// How long one liveness probe may go unanswered (Orleans' ProbeTimeout). A silo that misses
    /// <see cref="MissedProbesLimit"/> probes in a row is suspected, and declared dead once enough others vote so.
    /// </summary>
    public TimeSpan ProbeTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Missed probes before a silo is suspected (Orleans' NumMissedProbesLimit; its default is 3).</summary>
    public int MissedProbesLimit { get; init; } = 3;

    /// <summary>
    /// The longest a dead node can go undeclared, roughly: probes every <see cref="ProbeTimeout"/>, up to four times
    /// that while the prober itself is degraded, times <see cref="MissedProbesLimit"/>, plus a table refresh.
    /// What the README promises and a test waits for (bounded, never a timed assertion).
    /// </summary>
    public TimeSpan DeathDeclarationBound => ProbeTimeout * (MissedProbesLimit + 1) * 2 + TimeSpan.FromSeconds(10);

    private static readonly System.Text.RegularExpressions.Regex s_nodeId = new("^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$",
        System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    /// <summary>A DNS-label-like id (it becomes a silo name and appears in host names and logs); throws <see cref="ArgumentException"/>.</summary>
    public static string ValidateNodeId(string value) => s_nodeId.IsMatch(value)
        ? value
        : throw new ArgumentException($"invalid node id '{value}': expected lower-case letters, digits, '-' and '.', at most 63, starting and ending with a letter or digit");
}
