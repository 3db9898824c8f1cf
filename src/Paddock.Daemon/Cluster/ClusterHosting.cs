using Orleans.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Orleans.Hosting;
using Orleans.Runtime;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// Wires cluster mode into the daemon's host: an Orleans silo in the same process and service container (so a grain
/// can reach the sandbox manager), clustered through Orleans' ADO.NET provider on the daemon's own PostgreSQL store,
/// and the membership follower that marks dead nodes' sandboxes lost. Nothing happens without <c>--cluster</c>.
/// </summary>
internal static class ClusterHosting
{
    /// <summary>The ADO.NET invariant of Npgsql: the provider loads <c>Npgsql.NpgsqlFactory</c> by it.</summary>
    private const string NpgsqlInvariant = "Npgsql";

    public static void AddCluster(WebApplicationBuilder builder, DaemonOptions options)
    {
        if (options.Cluster is not { } cluster)
        {
            return;
        }
        var connectionString = options.PostgresConnectionString
            ?? throw new ArgumentException("--cluster needs the PostgreSQL store (--store postgres://…): every node shares it");
        builder.UseOrleans(silo =>
        {
            silo.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = cluster.ClusterId;
                o.ServiceId = "paddock";
            });
            silo.Configure<SiloOptions>(o => o.SiloName = cluster.NodeId);
            // Silo-to-silo only: nothing outside the cluster calls grains, so no client gateway (port 0 turns it off).
            silo.ConfigureEndpoints(cluster.AdvertiseAddress, cluster.SiloPort, gatewayPort: 0, listenOnAnyHostAddress: false);
            silo.UseAdoNetClustering(o =>
            {
                o.Invariant = NpgsqlInvariant;
                o.ConnectionString = connectionString;
            });
            silo.Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = cluster.ProbeTimeout;
                o.NumMissedProbesLimit = cluster.MissedProbesLimit;
                // Orleans' defaults (a table read every 60 s, an I-am-alive row every 30 s) are tuned for large
                // clusters; a death is gossiped at once anyway, and these bound how late a node that missed the
                // gossip learns of it.
                o.TableRefreshTimeout = cluster.ProbeTimeout * 2;
                o.IAmAliveTablePublishTimeout = cluster.ProbeTimeout * 2;
            });
            silo.AddPlacementDirector<NodePlacement, NodePlacementDirector>();
        });
        // Orleans' default handler ends the process (FailFast) when this silo learns that the cluster declared it
        // dead; this one keeps the node up, answering 503 and saying why, and ends its sandboxes (ClusterEviction).
        builder.Services.AddSingleton<ClusterEviction>();
        builder.Services.Replace(ServiceDescriptor.Singleton<IFatalErrorHandler>(sp => sp.GetRequiredService<ClusterEviction>()));
        builder.Services.AddSingleton<ClusterMembership>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ClusterMembership>());
        builder.Services.AddSingleton<ClusterDirectory>();
        builder.Services.AddSingleton<ClusterPlacement>();
        builder.Services.AddSingleton<NodeTemplates>();
        // Teams and keys live in each node's memory: a change through one node is pushed to the others, and each
        // reloads periodically for a push it missed. DaemonHost adds the single daemon's no-op only when this is absent.
        builder.Services.AddSingleton<Teams.ITeamChangeFanout, ClusterTeamFanout>();
        // The batch metrics listing answers for every node's sandboxes: the owners are asked (ClusterSandboxMetrics).
        builder.Services.AddSingleton<Api.IRemoteSandboxMetrics, ClusterSandboxMetrics>();
        // Templates made on one node start on any node: layers fetched on first use, deletes reach every holder.
        builder.Services.AddHttpContextAccessor();
        builder.Services.AddSingleton<Templates.ITemplateReplicas, ClusterTemplateReplicas>();
        builder.Services.AddHostedService(sp => new ClusterTeamRefresh(
            sp.GetRequiredService<Teams.TeamDirectory>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<ClusterTeamRefresh>>()));
        // Orleans logs every membership step at Information; the daemon's own lines (ClusterLog) say what matters.
        builder.Logging.AddFilter("Orleans", LogLevel.Warning);
        // Orleans' placement retries through Polly, which logs every attempt at Information.
        builder.Logging.AddFilter("Polly", LogLevel.Warning);
    }
}
