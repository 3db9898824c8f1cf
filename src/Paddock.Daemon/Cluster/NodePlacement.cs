using Orleans.Placement;
using Orleans.Runtime;
using Orleans.Runtime.Placement;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// Places a grain keyed by a node id on the silo of that node and nowhere else: a node grain speaks for the host it
/// runs on (its sandboxes, its capacity), so an activation on another silo would answer for the wrong machine.
/// </summary>
[GenerateSerializer, Immutable]
internal sealed class NodePlacement : PlacementStrategy
{
    public static NodePlacement Instance { get; } = new();
}

/// <summary>Marks a grain class as placed by <see cref="NodePlacement"/>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
internal sealed class NodePlacementAttribute : PlacementAttribute
{
    public NodePlacementAttribute()
        : base(NodePlacement.Instance)
    {
    }
}

/// <summary>
/// The director of <see cref="NodePlacement"/>: the grain's string key is a node id, and the one active silo whose
/// name (SiloOptions.SiloName, set to the node id in ClusterHosting) is that id gets the activation. When that node
/// is not an active member there is no right place: the call fails with a message naming the node, rather than
/// landing on a silo that would answer for another host.
/// </summary>
internal sealed class NodePlacementDirector(IClusterMembershipService membership) : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var nodeId = target.GrainIdentity.Key.ToString();
        var members = membership.CurrentSnapshot.Members;
        foreach (var silo in context.GetCompatibleSilos(target))
        {
            if (members.TryGetValue(silo, out var member) && member.Status == SiloStatus.Active && string.Equals(member.Name, nodeId, StringComparison.Ordinal))
            {
                return Task.FromResult(silo);
            }
        }
        throw new OrleansException($"node '{nodeId}' is not an active member of the cluster");
    }
}
