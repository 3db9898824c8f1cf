using System.Data.Common;
using Orleans.Runtime;
using Paddock.Daemon.Teams;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// Cluster mode's <see cref="ITeamChangeFanout"/>: after a change to teams or keys through this node, every other
/// active node's grain reloads them from the store, all at once, each awaited for at most <see cref="ReloadTimeout"/>.
/// So a key revoked through one node is refused by the next request through any node that answered; one that did not
/// answer (cut off, overloaded) is logged and catches up by <see cref="ClusterTeamRefresh"/>.
/// </summary>
internal sealed class ClusterTeamFanout(IGrainFactory grains, ClusterMembership membership, DaemonOptions options, ILogger<ClusterTeamFanout> logger) : ITeamChangeFanout
{
    /// <summary>As long as placement waits for a node's report (ClusterPlacement): a reload is two small reads.</summary>
    public static readonly TimeSpan ReloadTimeout = TimeSpan.FromSeconds(3);

    public async Task NotifyAsync(CancellationToken cancellationToken)
    {
        var self = options.Cluster!.NodeId;
        var others = membership.Nodes
            .Where(n => n.Status == nameof(SiloStatus.Active) && n.NodeId != self)
            .Select(n => n.NodeId).Distinct(StringComparer.Ordinal).ToList();
        await Task.WhenAll(others.Select(async node =>
        {
            try
            {
                if (!await grains.GetGrain<INodeGrain>(node).ReloadTeamsAsync().WaitAsync(ReloadTimeout, cancellationToken))
                {
                    ClusterLog.TeamReloadNotAnswered(logger, node, "it could not read the store", ClusterTeamRefresh.Period, null);
                }
            }
            catch (Exception ex) when (ex is TimeoutException or OrleansException or InvalidOperationException)
            {
                // TimeoutException: no answer in time; Orleans': the node is unreachable or left;
                // InvalidOperationException: its grain is not on it (NodeGrain's check).
                ClusterLog.TeamReloadNotAnswered(logger, node, ex.GetType().Name, ClusterTeamRefresh.Period, ex);
            }
        }));
    }
}

/// <summary>
/// The backstop for <see cref="ClusterTeamFanout"/>: every <see cref="Period"/> this node reloads teams and keys from
/// the store, so a node that missed a change's call (partitioned, slow, or joining while it was made) refuses a revoked
/// key at most one period plus a store read late. A failed read keeps the keys loaded before (a store outage must not
/// lock every client out) and is logged once per outage.
/// </summary>
internal sealed class ClusterTeamRefresh(TeamDirectory teams, TimeProvider time, ILogger<ClusterTeamRefresh> logger, TimeSpan? period = null) : BackgroundService
{
    /// <summary>
    /// The bound on how late a node that missed a change sees it. Two small reads per node per period: 5 s costs the
    /// store nothing measurable and keeps a missed revocation's window short.
    /// </summary>
    public static readonly TimeSpan Period = TimeSpan.FromSeconds(5);

    private readonly TimeSpan _period = period ?? Period;
    private bool _failing;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_period, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                await RefreshAsync(stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>One reload; false when the store could not be read (the old view stays).</summary>
    public async Task<bool> RefreshAsync(CancellationToken cancellationToken)
    {
        try
        {
            await teams.ReloadAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is DbException or IOException or TimeoutException or InvalidOperationException)
        {
            if (!_failing)
            {
                ClusterLog.TeamRefreshFailed(logger, ex);
                _failing = true;
            }
            return false;
        }
        if (_failing)
        {
            ClusterLog.TeamRefreshRecovered(logger);
            _failing = false;
        }
        return true;
    }
}
