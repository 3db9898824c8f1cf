using Orleans.Runtime;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// What a node does once the cluster no longer counts it as a member. Orleans tells a silo this through its fatal
/// error handler: a silo that reads its own row as Dead in the membership table (the other nodes declared it dead,
/// e.g. because it was cut off from them while it still reached PostgreSQL) calls
/// <see cref="IFatalErrorHandler.OnFatalException"/> ("I have been told I am dead, so this silo will stop!",
/// MembershipTableManager.KillMyselfLocally), and Orleans' own handler then ends the process with
/// <see cref="Environment.FailFast(string)"/>: no answer to anyone, a crash dump, and sandboxes left running under a
/// process that is gone. This handler replaces it (as Orleans' own test host does): the node stays up and says what
/// happened. From then on every request to its API and proxy, <c>/health</c> included, is answered 503 with
/// <see cref="Message"/> (ClusterRouter), and its sandboxes are destroyed: the others have already marked them lost,
/// and users were told so, so a sandbox that kept running here would be one that the cluster says is gone.
/// <para>
/// It does not rejoin by itself: an Orleans silo cannot start again inside the host it ran in, and a node that had to
/// guess when its network is back would flap. It serves again once restarted (a new silo generation, the restart path
/// that docs/cluster.md describes): by an operator, systemd or Kubernetes, whose probe on <c>/health</c> sees the 503.
/// </para>
/// </summary>
internal sealed class ClusterEviction(IServiceProvider services, DaemonOptions options, ILogger<ClusterEviction> logger) : IFatalErrorHandler
{
    private string? _message;

    /// <summary>Why this node no longer serves, or null while it is a member.</summary>
    public string? Message => Volatile.Read(ref _message);

    // As Orleans' own handler: everything but a thread abort is unexpected.
    public bool IsUnexpected(Exception exception) => exception is not ThreadAbortException;

    public void OnFatalException(object? sender = null, string? context = null, Exception? exception = null)
    {
        var nodeId = options.Cluster!.NodeId;
        var message = $"node {nodeId} is no longer a member of the cluster: the other nodes declared it dead (cut off from them, "
            + "or too slow to answer their probes), and its sandboxes were ended; send requests to another node (this one serves again once restarted)";
        // Orleans may report it more than once (each table read that finds this silo dead): the first report acts.
        if (Interlocked.CompareExchange(ref _message, message, null) is not null)
        {
            return;
        }
        ClusterLog.Evicted(logger, nodeId, context ?? "(no context)", exception);
        // Not on Orleans' membership thread, which called here.
        _ = Task.Run(DestroySandboxesAsync);
    }

    private async Task DestroySandboxesAsync()
    {
        var nodeId = options.Cluster!.NodeId;
        var manager = services.GetRequiredService<SandboxManager>();
        var reason = $"lost: its node {nodeId} was declared dead by the cluster (cut off from the other nodes); the node destroyed it";
        var sandboxes = manager.Running.Concat(manager.Paused).Select(r => r.SandboxId).Distinct(StringComparer.Ordinal).ToList();
        var destroyed = 0;
        foreach (var sandboxId in sandboxes)
        {
            try
            {
                if (await manager.KillAsync(sandboxId, reason))
                {
                    destroyed++;
                }
            }
            catch (Exception ex) when (ex is System.Data.Common.DbException or IOException or TimeoutException or InvalidOperationException)
            {
                // The kill itself is done before the record is written; a store this node cannot write to (a partition
                // that took the database too) leaves the record as the others marked it: lost.
                ClusterLog.EvictedKillFailed(logger, sandboxId, ex);
            }
        }
        ClusterLog.EvictedSandboxesDestroyed(logger, nodeId, destroyed, sandboxes.Count);
    }
}
