using System.Threading.Channels;
using Orleans.Runtime;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Cluster;

/// <summary>A node as the cluster's membership sees it now.</summary>
internal sealed record ClusterNodeView(string NodeId, string Silo, string Status, bool Self);

/// <summary>
/// Follows Orleans' membership view (<see cref="IClusterMembershipService.MembershipUpdates"/>) and acts on it: when
/// a silo is declared dead, the sandboxes its node ran are marked lost in the store, in one statement
/// (<see cref="PostgresStore.MarkNodeLostAsync"/>), so their records say why and the API answers 404 for them. Every
/// surviving node does this; the update only touches records still starting, running or paused, so whichever
/// node comes first does the work and the others change nothing.
/// <para>
/// A node restarted under the same id leaves its old silo dead behind it (Orleans declares the older generation of
/// the same address dead when the new one joins). Its records are then not marked lost: the node's own recovery at
/// start (SandboxRecovery, reading only its own records in cluster mode) re-adopts what still runs and destroys
/// strays. The one window not covered: a node whose old silo is declared dead while it restarts and has re-adopted
/// sandboxes, before its new silo joined; its re-adopted records then say lost while they run (until they time out).
/// </para>
/// </summary>
internal sealed class ClusterMembership(
    IClusterMembershipService membership,
    PostgresStore store,
    DaemonOptions options,
    ILogger<ClusterMembership> logger) : BackgroundService
{
    private static readonly TimeSpan RetryPeriod = TimeSpan.FromSeconds(2);

    private readonly HashSet<SiloAddress> _handled = [];
    private volatile IReadOnlyList<ClusterNodeView> _nodes = [];

    /// <summary>Every silo the membership table holds, newest generation first per node.</summary>
    public IReadOnlyList<ClusterNodeView> Nodes => _nodes;

    /// <summary>Raised with a node's id when one of its silos dies or a new one appears (routing caches drop it).</summary>
    public event Action<string>? NodeChanged;

    /// <summary>Whether a silo of <paramref name="nodeId"/> is an active member now.</summary>
    public bool IsActive(string nodeId) => _nodes.Any(n => n.NodeId == nodeId && n.Status == nameof(SiloStatus.Active));

    /// <summary>The URL the other nodes forward this node's sandboxes' requests to: the advertised address, the listen port.</summary>
    public static string ApiUrl(DaemonOptions options) =>
        $"{options.Listen.Scheme}://{(options.Cluster!.AdvertiseAddress.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{options.Cluster.AdvertiseAddress}]" : options.Cluster.AdvertiseAddress.ToString())}:{options.Listen.Port}";

    private string Self => options.Cluster!.NodeId;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var cluster = options.Cluster!;
        ClusterLog.Joining(logger, cluster.NodeId, cluster.AdvertiseAddress.ToString(), cluster.SiloPort, cluster.ClusterId);
        // Before any other node can learn of this one as active (its silo joins after the hosted services start).
        await store.RegisterNodeAsync(cluster.NodeId, ApiUrl(options), stoppingToken);
        ClusterLog.Registered(logger, cluster.NodeId, ApiUrl(options));
        // The newest view only: a slow store must not queue views that are already out of date.
        var latest = Channel.CreateBounded<ClusterMembershipSnapshot>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropOldest });
        var pump = Task.Run(async () =>
        {
            try
            {
                await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken))
                {
                    latest.Writer.TryWrite(snapshot);
                }
            }
            finally
            {
                latest.Writer.TryComplete();
            }
        }, stoppingToken);

        ClusterMembershipSnapshot? current = null;
        var retry = false;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                if (retry)
                {
                    // A mark that failed (the store unreachable) is tried again with the newest view, every RetryPeriod.
                    using var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                    wait.CancelAfter(RetryPeriod);
                    try
                    {
                        current = await latest.Reader.ReadAsync(wait.Token);
                    }
                    catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
                    {
                    }
                }
                else
                {
                    current = await latest.Reader.ReadAsync(stoppingToken);
                }
                retry = !await ApplyAsync(current!, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (ChannelClosedException)
        {
            // The silo stopped: no more views.
        }
        await pump.ContinueWith(_ => { }, TaskScheduler.Default);
    }

    /// <summary>Publishes the view and marks dead nodes' sandboxes lost; false when a mark failed and must be retried.</summary>
    private async Task<bool> ApplyAsync(ClusterMembershipSnapshot snapshot, CancellationToken cancellationToken)
    {
        var members = snapshot.Members.Values;
        var view = members
            .OrderBy(m => m.Name, StringComparer.Ordinal).ThenByDescending(m => m.SiloAddress.Generation)
            .Select(m => new ClusterNodeView(m.Name, m.SiloAddress.ToParsableString(), m.Status.ToString(), m.Name == Self))
            .ToList();
        // The dead nodes' sandboxes are marked lost before the view that says so is published: the router answers a
        // sandbox of a node that is not active from the record, so a view published first answered "not found" for
        // them, until the mark came, instead of why they are gone (seen in CI's cluster test).
        var ok = true;
        foreach (var dead in members.Where(m => m.Status == SiloStatus.Dead && !_handled.Contains(m.SiloAddress)))
        {
            if (dead.Name == Self)
            {
                // This node's own earlier life: its recovery at start already reconciled its records.
                _handled.Add(dead.SiloAddress);
                continue;
            }
            if (members.FirstOrDefault(m => m.Name == dead.Name && m.Status != SiloStatus.Dead && m.SiloAddress.Generation > dead.SiloAddress.Generation) is { } back)
            {
                ClusterLog.NodeRestarted(logger, dead.Name, dead.SiloAddress.ToParsableString(), back.SiloAddress.ToParsableString());
                _handled.Add(dead.SiloAddress);
                continue;
            }
            try
            {
                var count = await store.MarkNodeLostAsync(dead.Name,
                    $"lost: its node {dead.Name} was declared dead by the cluster (silo {dead.SiloAddress.ToParsableString()})", cancellationToken);
                ClusterLog.NodeLost(logger, dead.Name, dead.SiloAddress.ToParsableString(), count);
                _handled.Add(dead.SiloAddress);
            }
            catch (Exception ex) when (ex is System.Data.Common.DbException or TimeoutException or InvalidOperationException)
            {
                ClusterLog.MarkLostFailed(logger, dead.Name, ex);
                ok = false;
            }
        }
        if (!view.SequenceEqual(_nodes))
        {
            foreach (var changed in view.Except(_nodes).Select(v => v.NodeId).Distinct())
            {
                NodeChanged?.Invoke(changed);
            }
            _nodes = view;
            ClusterLog.Membership(logger, string.Join(", ", view.Select(v => $"{v.NodeId}={v.Status}")));
        }
        return ok;
    }
}
