namespace Paddock.Daemon.Teams;

/// <summary>
/// Tells the other daemons that share this one's store that teams or keys changed, so that they reload them too.
/// <see cref="TeamDirectory"/> calls it after every change, once its own view is reloaded and before the change
/// returns. A single daemon has nobody to tell (<see cref="NoTeamChangeFanout"/>); cluster mode's is
/// Cluster/ClusterTeamFanout.
/// </summary>
internal interface ITeamChangeFanout
{
    /// <summary>
    /// Returns when every other node has reloaded, or was given up on (each within a short bound, logged): a node that
    /// did not answer catches up by its own periodic reload. Never throws for a node that failed.
    /// </summary>
    Task NotifyAsync(CancellationToken cancellationToken);
}

/// <summary>One daemon on its own store: its reload after the change is all there is.</summary>
internal sealed class NoTeamChangeFanout : ITeamChangeFanout
{
    public Task NotifyAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
