using System.Text.Json.Serialization;
using Paddock.Daemon.Api;
using Paddock.Daemon.Auth;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// <c>GET /cluster/nodes</c> (an admin team's key): the cluster's membership as this node sees it. Without cluster
/// mode a 404 that says so.
/// </summary>
internal static class ClusterEndpoints
{
    private static readonly TimeSpan ReportTimeout = TimeSpan.FromSeconds(5);

    public static void MapClusterApi(this IEndpointRouteBuilder app) => app.MapGet("/cluster/nodes", async (HttpContext http) =>
    {
        if (!http.GetCaller().IsAdmin)
        {
            throw new ApiRequestException(StatusCodes.Status403Forbidden, "only keys of an admin team may read the cluster's membership");
        }
        var options = http.RequestServices.GetRequiredService<DaemonOptions>();
        if (options.Cluster is not { } cluster || http.RequestServices.GetService<ClusterMembership>() is not { } membership)
        {
            throw new ApiRequestException(StatusCodes.Status404NotFound, "this paddockd does not run in cluster mode (--cluster)");
        }
        // Each active node answers for itself through its node grain, which runs on that node's silo only.
        var grains = http.RequestServices.GetRequiredService<IGrainFactory>();
        var nodes = await Task.WhenAll(membership.Nodes.Select(async n =>
        {
            NodeReport? report = null;
            string? error = null;
            if (n.Status == nameof(Orleans.Runtime.SiloStatus.Active))
            {
                try
                {
                    report = await grains.GetGrain<INodeGrain>(n.NodeId).GetReportAsync().WaitAsync(ReportTimeout, http.RequestAborted);
                }
                catch (Exception ex) when (ex is TimeoutException or Orleans.Runtime.OrleansException or InvalidOperationException)
                {
                    error = ex.Message;
                }
            }
            return new ClusterNodeResponse(n.NodeId, n.Silo, n.Status.ToLowerInvariant(), n.Self, report?.Reserved, report?.MaxSandboxes, error)
            {
                Cpus = report?.Cpus,
                CpusPromised = report?.CpusPromised,
                MemoryTotalMB = report?.MemoryTotalMB,
                MemoryAvailableMB = report?.MemoryAvailableMB,
                MemoryPromisedMB = report?.MemoryPromisedMB,
                Templates = report is null || report.Templates.IsDefault ? null : [.. report.Templates],
                Pools = report is null || report.Pools.IsDefault ? null : [.. report.Pools.Select(p => new ClusterPoolResponse(p.Pool, p.TemplateId, p.Isolation, p.Ready))],
                Tiers = report is null || report.Tiers.IsDefault ? null : [.. report.Tiers],
            };
        }));
        return Results.Json(new ClusterNodesResponse(cluster.NodeId, cluster.ClusterId, nodes), ClusterJsonContext.Default.ClusterNodesResponse);
    });
}

internal sealed record ClusterNodeResponse(
    [property: JsonPropertyName("nodeID")] string NodeId,
    [property: JsonPropertyName("silo")] string Silo,
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("self")] bool Self,
    [property: JsonPropertyName("reserved")] int? Reserved,
    [property: JsonPropertyName("maxSandboxes")] int? MaxSandboxes,
    [property: JsonPropertyName("error")] string? Error)
{
    [JsonPropertyName("cpus")] public int? Cpus { get; init; }

    [JsonPropertyName("cpusPromised")] public int? CpusPromised { get; init; }

    [JsonPropertyName("memoryTotalMB")] public long? MemoryTotalMB { get; init; }

    [JsonPropertyName("memoryAvailableMB")] public long? MemoryAvailableMB { get; init; }

    [JsonPropertyName("memoryPromisedMB")] public long? MemoryPromisedMB { get; init; }

    [JsonPropertyName("templates")] public IReadOnlyList<string>? Templates { get; init; }

    [JsonPropertyName("pools")] public IReadOnlyList<ClusterPoolResponse>? Pools { get; init; }

    [JsonPropertyName("tiers")] public IReadOnlyList<string>? Tiers { get; init; }
}

internal sealed record ClusterPoolResponse(
    [property: JsonPropertyName("pool")] string Pool,
    [property: JsonPropertyName("templateID")] string? TemplateId,
    [property: JsonPropertyName("isolation")] string? Isolation,
    [property: JsonPropertyName("ready")] int Ready);

internal sealed record ClusterNodesResponse(
    [property: JsonPropertyName("self")] string Self,
    [property: JsonPropertyName("clusterID")] string ClusterId,
    [property: JsonPropertyName("nodes")] IReadOnlyList<ClusterNodeResponse> Nodes);

[JsonSerializable(typeof(ClusterNodesResponse))]
internal sealed partial class ClusterJsonContext : JsonSerializerContext;
