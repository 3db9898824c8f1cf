using Paddock.Daemon.Api;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Pools;
using Paddock.Daemon.Sandboxes;
using Prometheus;

namespace Paddock.Daemon.Observability;

/// <summary>
/// <c>GET /metrics</c>: Prometheus text format 0.0.4 for an admin key (the series carry team ids); Prometheus sends it
/// as <c>authorization: {credentials: KEY}</c> (a Bearer header), which the key check accepts as well as X-API-Key.
/// </summary>
internal static class MetricsEndpoint
{
    public static void MapMetricsEndpoint(this IEndpointRouteBuilder app)
    {
        app.MapGet("/metrics", async (HttpContext http, DaemonMetrics metrics) =>
        {
            if (!metrics.Enabled)
            {
                await ApiErrorMiddleware.WriteAsync(http, StatusCodes.Status404NotFound, "metrics are off (--metrics off)");
                return;
            }
            if (!http.GetCaller().IsAdmin)
            {
                await ApiErrorMiddleware.WriteAsync(http, StatusCodes.Status403Forbidden, "GET /metrics needs a key of the admin team: its series name every team");
                return;
            }
            http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await metrics.Registry.CollectAndExportAsTextAsync(http.Response.Body, http.RequestAborted);
        });
    }

    /// <summary>Sets the gauges from their owners before each scrape.</summary>
    public static void RegisterGauges(IServiceProvider services)
    {
        var metrics = services.GetRequiredService<DaemonMetrics>();
        var manager = services.GetRequiredService<SandboxManager>();
        var freezer = services.GetService<IdleFreezer>();
        var pools = services.GetService<WarmPools>();
        var options = services.GetRequiredService<DaemonOptions>();
        var lastSandboxLabels = new HashSet<(string, string, string)>();
        var lastPools = new HashSet<string>(StringComparer.Ordinal);
        var gate = new Lock();
        metrics.OnCollect(() =>
        {
            lock (gate)
            {
                var counts = new Dictionary<(string State, string Tier, string Team), int>();
                foreach (var r in manager.Running)
                {
                    var key = (freezer?.IsFrozen(r.SandboxId) == true ? "frozen" : "running", r.RuntimeName, r.TeamId);
                    counts[key] = counts.GetValueOrDefault(key) + 1;
                }
                foreach (var stale in lastSandboxLabels.Where(k => !counts.ContainsKey(k)).ToList())
                {
                    metrics.Sandboxes!.RemoveLabelled(stale.Item1, stale.Item2, stale.Item3);
                    lastSandboxLabels.Remove(stale);
                }
                foreach (var (key, n) in counts)
                {
                    metrics.Sandboxes!.WithLabels(key.State, key.Tier, key.Team).Set(n);
                    lastSandboxLabels.Add(key);
                }
                if (pools is not null)
                {
                    var ready = pools.ReadyCounts;
                    foreach (var stale in lastPools.Where(p => !ready.ContainsKey(p)).ToList())
                    {
                        metrics.PoolReady!.RemoveLabelled(stale);
                        lastPools.Remove(stale);
                    }
                    foreach (var (pool, n) in ready)
                    {
                        metrics.PoolReady!.WithLabels(pool).Set(n);
                        lastPools.Add(pool);
                    }
                }
                metrics.Frozen!.Set(freezer?.FrozenCount ?? 0);
                metrics.Teardowns!.Set(manager.PendingTeardowns);
                metrics.CapacityLeft!.Set(Math.Max(0, options.MaxSandboxes - manager.Reserved));
            }
        });
    }
}
