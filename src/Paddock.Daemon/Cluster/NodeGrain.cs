using System.Data.Common;
using Orleans.Concurrency;
using Orleans.Runtime;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Teams;

namespace Paddock.Daemon.Cluster;

/// <summary>One per node, activated only on that node's silo (<see cref="NodePlacement"/>); keyed by the node id.</summary>
internal interface INodeGrain : IGrainWithStringKey
{
    /// <summary>What the node runs and can still take, read from its own memory (not from the store).</summary>
    Task<NodeReport> GetReportAsync();

    /// <summary>
    /// Reloads the node's teams and API keys from the store (another node changed them: ClusterTeamFanout); false
    /// when the node could not read the store (logged there; it keeps its keys until its periodic reload works).
    /// Interleaved: a placement's report must not wait behind a store read.
    /// </summary>
    [AlwaysInterleave]
    Task<bool> ReloadTeamsAsync();

    /// <summary>
    /// Removes the node's copy of a deleted template's layer (ClusterTemplateReplicas); false when it had none or a
    /// template still names it.
    /// </summary>
    [AlwaysInterleave]
    Task<bool> RemoveLayerCopyAsync(string layer);
}

/// <summary>A node's answer about itself.</summary>
[GenerateSerializer, Immutable]
internal sealed record NodeReport
{
    [Id(0)] public required string NodeId { get; init; }

    [Id(1)] public required string SiloAddress { get; init; }

    /// <summary>Sandboxes running or starting on the node.</summary>
    [Id(2)] public required int Reserved { get; init; }

    /// <summary>The node's own limit (<c>--max-sandboxes</c>).</summary>
    [Id(3)] public required int MaxSandboxes { get; init; }
}

[NodePlacement]
internal sealed class NodeGrain(SandboxManager sandboxes, TeamDirectory teams, DaemonOptions options, ILocalSiloDetails silo, ILogger<NodeGrain> logger,
    Templates.TemplateRegistry templates) : Grain, INodeGrain
{
    public Task<bool> RemoveLayerCopyAsync(string layer)
    {
        SelfKey();
        return templates.RemoveCopyAsync(layer, CancellationToken.None);
    }

    public Task<NodeReport> GetReportAsync()
    {
        var key = SelfKey();
        return Task.FromResult(new NodeReport
        {
            NodeId = key,
            SiloAddress = silo.SiloAddress.ToParsableString(),
            Reserved = sandboxes.Reserved,
            MaxSandboxes = options.MaxSandboxes,
        });
    }

    public async Task<bool> ReloadTeamsAsync()
    {
        SelfKey();
        try
        {
            await teams.ReloadAsync(CancellationToken.None);
            return true;
        }
        catch (Exception ex) when (ex is DbException or IOException or TimeoutException)
        {
            // An answer, not an exception: the caller's change succeeded, and what failed is this node's read.
            ClusterLog.TeamReloadFailed(logger, ex);
            return false;
        }
    }

    private string SelfKey()
    {
        var key = this.GetPrimaryKeyString();
        if (!string.Equals(key, options.Cluster?.NodeId, StringComparison.Ordinal))
        {
            // Only a placement bug could bring this here; answering would report another host's state as this one's.
            throw new InvalidOperationException($"the grain of node '{key}' was activated on node '{options.Cluster?.NodeId}'");
        }
        return key;
    }
}
