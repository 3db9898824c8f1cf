using Orleans.Runtime;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// Where a create goes in cluster mode: each active node reports its free sandbox slots through its node grain (which
/// runs on that node and reads its own memory), and of <see cref="Choices"/> nodes drawn at random among those with a
/// free slot, the one with the most free slots wins (best-of-K, "the power of two choices": near the balance of
/// asking everyone, without every create herding onto the one emptiest node). This node wins ties, saving a hop.
/// A report is a hint, not a reservation: the chosen node's own slot reservation (SandboxManager, an atomic count
/// against --max-sandboxes) decides a race for its last slot, so exactly one create gets it and the other a 429.
/// Not considered yet: CPU and memory, templates present, warm pools, tiers (docs/cluster.md).
/// </summary>
internal sealed class ClusterPlacement(IGrainFactory grains, ClusterMembership membership, DaemonOptions options)
{
    /// <summary>K of best-of-K.</summary>
    public const int Choices = 2;

    private static readonly TimeSpan ReportTimeout = TimeSpan.FromSeconds(3);

    /// <summary>The node to create on, or null when no active node has a free slot (or none answered).</summary>
    public async Task<string?> ChooseAsync(CancellationToken cancellationToken)
    {
        var self = options.Cluster!.NodeId;
        var active = membership.Nodes.Where(n => n.Status == nameof(SiloStatus.Active)).Select(n => n.NodeId).Distinct(StringComparer.Ordinal).ToList();
        var reports = await Task.WhenAll(active.Select(async node =>
        {
            try
            {
                return await grains.GetGrain<INodeGrain>(node).GetReportAsync().WaitAsync(ReportTimeout, cancellationToken);
            }
            catch (Exception ex) when (ex is TimeoutException or OrleansException or InvalidOperationException)
            {
                // A node that cannot say is not chosen; its death, if that is what this is, comes from membership.
                return null;
            }
        }));
        var open = reports.OfType<NodeReport>().Where(r => r.Reserved < r.MaxSandboxes).ToList();
        if (open.Count == 0)
        {
            return null;
        }
        return open
            .OrderBy(_ => Random.Shared.Next())
            .Take(Choices)
            .OrderByDescending(r => r.MaxSandboxes - r.Reserved)
            .ThenByDescending(r => r.NodeId == self)
            .First().NodeId;
    }
}
