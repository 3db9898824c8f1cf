namespace Paddock.Daemon.Api;

/// <summary>
/// The part of the batch metrics listing (<c>GET /sandboxes/metrics</c>) about sandboxes that run on other daemons:
/// a single daemon has none (<see cref="NoRemoteSandboxMetrics"/>); cluster mode's asks each owner node
/// (Cluster/ClusterSandboxMetrics). Keeps the API free of cluster types, as <c>Teams/ITeamChangeFanout</c> does.
/// </summary>
internal interface IRemoteSandboxMetrics
{
    /// <summary>
    /// Metrics of those of <paramref name="ids"/> (none of them held by this daemon) that run on another node and that
    /// the caller's key may see there; ids nobody answered for are absent. Never throws for a node that failed.
    /// </summary>
    Task<IReadOnlyDictionary<string, SandboxMetricResponse>> GetAsync(HttpContext http, IReadOnlyList<string> ids, CancellationToken cancellationToken);
}

/// <summary>One daemon: every sandbox it knows is in its own memory.</summary>
internal sealed class NoRemoteSandboxMetrics : IRemoteSandboxMetrics
{
    private static readonly IReadOnlyDictionary<string, SandboxMetricResponse> None = new Dictionary<string, SandboxMetricResponse>();

    public Task<IReadOnlyDictionary<string, SandboxMetricResponse>> GetAsync(HttpContext http, IReadOnlyList<string> ids, CancellationToken cancellationToken) =>
        Task.FromResult(None);
}
