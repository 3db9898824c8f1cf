using System.Globalization;
using Orleans.Runtime;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// What a create asks of the node it runs on, as its body says (null: not said, the node's default applies).
/// <see cref="Isolation"/> is the tier asked for, else the tier the caller's team is bound to; a template's own
/// default tier is not known here (it would take a store read per create) and is not filtered on.
/// </summary>
internal sealed record PlacementNeeds(string? Template, string? Isolation, int? CpuCount, int? MemoryMB, int? DiskSizeMB)
{
    public static readonly PlacementNeeds None = new(null, null, null, null, null);
}

/// <summary>
/// Where a create goes, or why nowhere: <see cref="Status"/> and <see cref="Message"/> are the refusal when
/// <see cref="NodeId"/> is null.
/// </summary>
internal sealed record PlacementChoice(string? NodeId, int Status, string? Message)
{
    public static PlacementChoice On(string nodeId) => new(nodeId, StatusCodes.Status200OK, null);

    public static PlacementChoice Refused(int status, string message) => new(null, status, message);
}

/// <summary>
/// Where a create goes in cluster mode. Each active node reports on itself through its node grain (which runs on that
/// node and reads its own memory: <see cref="NodeReport"/>), and <see cref="Choose"/> decides from the reports alone:
/// first the nodes that cannot take the create are left out (see there), then among the rest the best class wins (a
/// node with a ready warm-pool member the create would claim, else a node that has the template, else any), and
/// within it, of <see cref="Choices"/> nodes drawn at random, the one with the most free capacity (best-of-K, "the
/// power of two choices", as E2B places: near the balance of asking everyone, without every create herding onto the
/// one emptiest node). This node wins ties, saving a hop.
/// A report is a hint, not a reservation: the chosen node's own slot reservation (SandboxManager, an atomic count
/// against --max-sandboxes) decides a race for its last slot, so exactly one create gets it; the router retries the
/// loser once on another node (ClusterRouter).
/// </summary>
internal sealed class ClusterPlacement(IGrainFactory grains, ClusterMembership membership, DaemonOptions options)
{
    /// <summary>K of best-of-K.</summary>
    public const int Choices = 2;

    private static readonly TimeSpan ReportTimeout = TimeSpan.FromSeconds(3);

    /// <summary>Every active node's report; a node that does not answer within 3 s is left out.</summary>
    public async Task<IReadOnlyList<NodeReport>> ReportsAsync(CancellationToken cancellationToken)
    {
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
        return [.. reports.OfType<NodeReport>()];
    }

    /// <summary>As <see cref="Choose"/>, for this node.</summary>
    public PlacementChoice Choose(IReadOnlyList<NodeReport> reports, PlacementNeeds needs, IReadOnlySet<string>? exclude = null) =>
        Choose(reports, needs, options.Cluster!.NodeId, Random.Shared, exclude);

    /// <summary>
    /// The node for a create with <paramref name="needs"/>, from the nodes' <paramref name="reports"/> alone.
    /// Left out, in this order (the refusal names the first rule that leaves none):
    /// a node in <paramref name="exclude"/> (one that already refused this create);
    /// when a tier is asked for, a node that cannot run it (503: "no node of the cluster can run isolation 'x'", with a
    /// node's reason; a tier that no node even knows is left to this node, whose API answers its 400);
    /// a node with fewer CPUs than <c>cpuCount</c> or less memory than <c>memoryMB</c> in all (400: no node is big
    /// enough, now or later);
    /// a node whose sandbox slots are all taken (429: every node is full);
    /// a node whose host has less memory available now (<c>MemAvailable</c>) than the sandbox's limit (429).
    /// CPU is not a filter beyond the node's size: a sandbox's <c>cpuCount</c> is a quota, and nodes overcommit it.
    /// Among the rest: the nodes with a ready pool member that the create would claim (same template, tier and
    /// limits as the pool's), else those that have the template, else all; of <see cref="Choices"/> of them drawn
    /// with <paramref name="random"/>, the one with the highest <see cref="FreeCapacity"/>, <paramref name="self"/>
    /// on a tie. No report at all: 429, as when every node is full (none answered).
    /// </summary>
    public static PlacementChoice Choose(IReadOnlyList<NodeReport> reports, PlacementNeeds needs, string self, Random random,
        IReadOnlySet<string>? exclude = null, int choices = Choices)
    {
        var nodes = reports.Where(r => exclude is null || !exclude.Contains(r.NodeId)).ToList();
        if (nodes.Count == 0)
        {
            return PlacementChoice.Refused(StatusCodes.Status429TooManyRequests,
                "every node of the cluster already runs its maximum of sandboxes (or none answered); kill some or add nodes");
        }
        var narrowed = false;
        if (needs.Isolation is { } tier)
        {
            // A report without a default tier comes from a node that does not report tiers (an older daemon): not left
            // out. Its lists may be missing altogether (a deserialized default), hence the IsDefault checks below.
            var capable = nodes.Where(n => n.DefaultTier is null || n.Tiers.Contains(tier, StringComparer.Ordinal)).ToList();
            if (capable.Count == 0)
            {
                var reason = nodes.Where(n => n.DefaultTier is not null && n.UnavailableTiers.ContainsKey(tier)).Select(n => $"node {n.NodeId}: {n.UnavailableTiers[tier]}").FirstOrDefault();
                return reason is null
                    // Unknown to every node: this node's API answers that (a 400 naming the tiers it has).
                    ? PlacementChoice.On(self)
                    : PlacementChoice.Refused(StatusCodes.Status503ServiceUnavailable, $"no node of the cluster can run isolation '{tier}' ({reason})");
            }
            narrowed = capable.Count < nodes.Count;
            nodes = capable;
        }
        // Only a size the create names: a node's own default is what its API gives, whatever its size.
        var cpus = nodes.Where(n => needs.CpuCount is not { } asked || n.Cpus == 0 || asked <= n.Cpus).ToList();
        if (cpus.Count == 0)
        {
            return PlacementChoice.Refused(StatusCodes.Status400BadRequest, string.Create(CultureInfo.InvariantCulture,
                $"cpuCount {needs.CpuCount}: no node of the cluster has that many CPUs (the most a node has is {nodes.Max(n => n.Cpus)})"));
        }
        var memory = cpus.Where(n => needs.MemoryMB is not { } asked || n.MemoryTotalMB == 0 || asked <= n.MemoryTotalMB).ToList();
        if (memory.Count == 0)
        {
            return PlacementChoice.Refused(StatusCodes.Status400BadRequest, string.Create(CultureInfo.InvariantCulture,
                $"memoryMB {needs.MemoryMB}: no node of the cluster has that much memory (the most a node has is {cpus.Max(n => n.MemoryTotalMB)} MiB)"));
        }
        var slots = memory.Where(n => n.Reserved < n.MaxSandboxes).ToList();
        if (slots.Count == 0)
        {
            return PlacementChoice.Refused(StatusCodes.Status429TooManyRequests, narrowed
                ? $"every node of the cluster that can run isolation '{needs.Isolation}' already runs its maximum of sandboxes; kill some or add nodes"
                : "every node of the cluster already runs its maximum of sandboxes; kill some or add nodes");
        }
        var open = slots.Where(n => n.MemoryAvailableMB is not { } available || MemoryMB(n, needs) <= available).ToList();
        if (open.Count == 0)
        {
            return PlacementChoice.Refused(StatusCodes.Status429TooManyRequests, string.Create(CultureInfo.InvariantCulture,
                $"no node of the cluster with a free sandbox slot has {MemoryMB(slots[0], needs)} MiB of memory available now (the most is {slots.Max(n => n.MemoryAvailableMB ?? 0)} MiB); try again later or ask for less"));
        }
        var pooled = open.Where(n => HasPoolMember(n, needs)).ToList();
        var present = open.Where(n => needs.Template is { } template && !n.Templates.IsDefault && n.Templates.Contains(template, StringComparer.Ordinal)).ToList();
        var candidates = pooled.Count > 0 ? pooled : present.Count > 0 ? present : open;
        var drawn = candidates.Count <= choices ? candidates : [.. candidates.OrderBy(_ => random.Next()).Take(choices)];
        return PlacementChoice.On(drawn
            .OrderByDescending(FreeCapacity)
            .ThenByDescending(n => n.NodeId == self)
            .First().NodeId);
    }

    /// <summary>
    /// How free a node is, 0 to 1: the mean of its free sandbox slots, its CPUs not promised to sandboxes (0 once
    /// overcommitted) and its host's available memory, each as a share of the node's whole. A figure a node did not
    /// report counts as its slots' share.
    /// </summary>
    public static double FreeCapacity(NodeReport node)
    {
        var slots = node.MaxSandboxes <= 0 ? 0 : Math.Max(0, node.MaxSandboxes - node.Reserved) / (double)node.MaxSandboxes;
        var cpu = node.Cpus <= 0 ? slots : Math.Clamp(1 - node.CpusPromised / (double)node.Cpus, 0, 1);
        var memory = node.MemoryTotalMB <= 0 || node.MemoryAvailableMB is not { } available ? slots : Math.Clamp(available / (double)node.MemoryTotalMB, 0, 1);
        return (slots + cpu + memory) / 3;
    }

    /// <summary>
    /// Whether the create would claim a ready member of one of the node's pools: a member runs the pool's template on
    /// its tier with the node's default limits, and a create with other limits or another tier starts afresh
    /// (Pools/WarmPools.TryTake).
    /// </summary>
    private static bool HasPoolMember(NodeReport node, PlacementNeeds needs) =>
        needs.Template is { } template
        && (needs.CpuCount is null || needs.CpuCount == node.DefaultCpuCount)
        && (needs.MemoryMB is null || needs.MemoryMB == node.DefaultMemoryMB)
        && (needs.DiskSizeMB is null || needs.DiskSizeMB == node.DefaultDiskSizeMB)
        && !node.Pools.IsDefault && node.Pools.Any(p => p.Ready > 0
            && (p.Pool == template || p.TemplateId == template)
            && (needs.Isolation is null || p.Isolation == needs.Isolation));

    private static long MemoryMB(NodeReport node, PlacementNeeds needs) => needs.MemoryMB ?? node.DefaultMemoryMB;
}
