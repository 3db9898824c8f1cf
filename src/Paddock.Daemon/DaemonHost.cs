using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Paddock.Daemon.Api;
using Paddock.Daemon.Audit;
using Paddock.Daemon.Observability;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Mcp;
using Paddock.Daemon.Pools;
using Paddock.Daemon.Proxy;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Store;
using Paddock.Daemon.Teams;
using Paddock.Daemon.Tls;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon;

/// <summary>
/// Builds paddockd: one Kestrel listener for the control plane and the sandbox proxy, the store, the lifecycle.
/// The isolation tier and the template lookup are given by the caller (Program, or a test with its own doubles).
/// </summary>
internal static class DaemonHost
{
    public static WebApplication Build(DaemonOptions options, Action<IServiceCollection> addRuntime, Action<ILoggingBuilder>? configureLogging = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        Observability.DaemonLogging.Configure(builder.Logging, options);
        configureLogging?.Invoke(builder.Logging);
        var certificate = options.Tls ? TlsSetup.Certificate(options) : null;
        if (certificate is not null)
        {
            builder.WebHost.UseKestrelHttpsConfiguration();
        }
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // Uploads to sandboxes stream through; the API bounds its own bodies (SandboxEndpoints.MaxBodyBytes).
            kestrel.Limits.MaxRequestBodySize = null;
            // A command's stdin stream may idle for minutes; that is not a slow-loris.
            kestrel.Limits.MinRequestBodyDataRate = null;
            var host = options.Listen.Host;
            var port = options.Listen.Port;
            // Plain HTTP: HTTP/1.1 only, as without TLS Kestrel cannot negotiate HTTP/2 (and h2c would shut out
            // HTTP/1.1 clients). With TLS, HTTP/2 and HTTP/1.1 by ALPN, for the API and the sandbox hosts alike.
            void Protocols(ListenOptions listen)
            {
                if (certificate is null)
                {
                    listen.Protocols = HttpProtocols.Http1;
                    return;
                }
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(https => https.ServerCertificateSelector = (_, _) => certificate.Current);
            }
            if (host == "localhost")
            {
                kestrel.ListenLocalhost(port, Protocols);
            }
            else if (IPAddress.TryParse(host.Trim('[', ']'), out var address))
            {
                kestrel.Listen(address, port, Protocols);
            }
            else
            {
                throw new ArgumentException($"cannot listen on '{host}': give an IP address or localhost");
            }
        });

        // 64 KiB blocks for the listener's sockets (uploads and downloads through the proxy): LargeBlockMemoryPool says why.
        builder.Services.AddSingleton<Microsoft.AspNetCore.Connections.IMemoryPoolFactory<byte>, Paddock.Shared.Kestrel.LargeBlockMemoryPoolFactory>();

        Cluster.ClusterHosting.AddCluster(builder, options);
        var services = builder.Services;
        services.AddSingleton(options);
        if (certificate is not null)
        {
            services.AddSingleton(certificate);
        }
        services.AddSingleton(TimeProvider.System);
        AddStore(services, options);
        services.AddSingleton<ApiKeyAuthenticator>();
        services.AddSingleton<Dashboard.DashboardSessions>();
        services.AddSingleton<ApiKeyCheck>();
        services.TryAddSingleton<ITeamChangeFanout, NoTeamChangeFanout>();
        services.TryAddSingleton<IRemoteSandboxMetrics, NoRemoteSandboxMetrics>();
        services.TryAddSingleton<Templates.ITemplateReplicas, Templates.NoTemplateReplicas>();
        services.AddSingleton<TeamDirectory>();
        services.AddSingleton<SandboxJournal>();
        services.AddSingleton(sp => new DeadlineScheduler(
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<DeadlineScheduler>>(),
            (id, ct) => sp.GetRequiredService<SandboxManager>().ExpireAsync(id, ct),
            async ct =>
            {
                await sp.GetRequiredService<SandboxManager>().ReapLostAsync(ct);
                await sp.GetRequiredService<ISandboxStore>().PurgeAsync(sp.GetRequiredService<TimeProvider>().GetUtcNow() - options.RecordRetention, ct);
                await sp.GetRequiredService<Audit.IAuditStore>().PurgeAsync(sp.GetRequiredService<TimeProvider>().GetUtcNow() - options.AuditRetention, ct);
            },
            options.HousekeepingPeriod));
        services.AddHostedService(sp => sp.GetRequiredService<DeadlineScheduler>());
        services.AddSingleton<TemplateRegistry>();
        services.AddSingleton<TemplateBuilds>();
        services.AddSingleton<TemplateFiles>();
        services.AddSingleton<TemplateStartup>();
        services.AddSingleton<StartImages>();
        services.AddSingleton<Templates.Images.ImageImporter>();
        services.AddSingleton<WarmPools>();
        services.AddHostedService(sp => sp.GetRequiredService<WarmPools>());
        services.AddSingleton<SandboxManager>();
        services.AddSingleton<Volumes.VolumeRecords>();
        services.AddSingleton<Volumes.VolumeManager>();
        // One sweep for every sandbox; the live set is read through the manager, which holds a lease for each kill.
        services.AddSingleton(sp => new IdleFreezer(
            sp.GetRequiredService<ISandboxRuntime>(),
            options,
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<IdleFreezer>>(),
            () => sp.GetRequiredService<SandboxManager>().Running.Select(r => r.SandboxId)));
        services.AddHostedService(sp => sp.GetRequiredService<IdleFreezer>());
        services.AddSingleton(sp => new MetricsHistory(
            sp.GetRequiredService<ISandboxRuntime>(),
            options,
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<MetricsHistory>>(),
            () => sp.GetRequiredService<SandboxManager>().Running.Select(r => r.SandboxId)));
        services.AddHostedService(sp => sp.GetRequiredService<MetricsHistory>());
        services.AddSingleton<SandboxRecovery>();
        services.AddSingleton<SandboxDomain>();
        services.AddSingleton<SandboxHttpClient>();
        services.AddHttpForwarder();
        services.AddSingleton<Observability.DaemonMetrics>();
        services.AddSingleton<Audit.AuditTrail>();
        services.AddHostedService(sp => sp.GetRequiredService<Audit.AuditTrail>());
        // What each tier's connection observer sees goes into the audit trail (Networking/ConnectionObserver).
        services.AddSingleton<Networking.IConnectionSink, Audit.ConnectionAudit>();
        Observability.DaemonTracing.AddTracing(services, options);
        services.AddPaddockMcpEndpoint();
        addRuntime(services);
        if (!services.Any(d => d.ServiceType == typeof(SandboxTier)) || !services.Any(d => d.ServiceType == typeof(ITemplateLookup)))
        {
            throw new InvalidOperationException("no isolation tier or template lookup is registered: this build of paddockd cannot run sandboxes");
        }
        // Every tier behind one runtime that routes by sandbox; what is above it sees tier names only as strings.
        services.AddSingleton(sp => new RuntimeTiers(sp.GetServices<SandboxTier>(), options.Isolation));
        services.AddSingleton<ISandboxRuntime>(sp => sp.GetRequiredService<RuntimeTiers>());
        services.AddSingleton<IIsolationTiers>(sp => sp.GetRequiredService<RuntimeTiers>());

        var app = builder.Build();
        if (certificate is not null)
        {
            certificate.Logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Paddock.Daemon.Tls");
        }
        // Made now, so that an unknown --isolation stops the start with its message, and the log says which tiers run here.
        var tiers = app.Services.GetRequiredService<RuntimeTiers>();
        var tierLog = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<RuntimeTiers>();
        foreach (var name in tiers.Names)
        {
            if (tiers.UnavailableReason(name) is { } reason)
            {
                RuntimeLog.TierUnavailable(tierLog, name, reason);
            }
        }
        RuntimeLog.Tiers(tierLog, string.Join(", ", tiers.Names), tiers.DefaultTier);
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
            if (addresses?.FirstOrDefault() is { } first && Uri.TryCreate(first, UriKind.Absolute, out var bound))
            {
                app.Services.GetRequiredService<SandboxDomain>().SetDefaultFromPort(bound.Port);
                app.Services.GetRequiredService<LoopbackAddress>().Set(bound);
            }
        });
        Observability.MetricsEndpoint.RegisterGauges(app.Services);
        // Order matters: sandbox traffic leaves before the API key check, which it does not need. The traffic
        // middleware only watches it (spans, metrics, the audit) and passes everything on.
        if (options.Cluster is not null)
        {
            // First: a request for another node's sandbox goes there whole, and that node observes and serves it.
            app.UseMiddleware<Cluster.ClusterRouter>();
        }
        app.UseMiddleware<Observability.SandboxTrafficMiddleware>();
        app.UseMiddleware<SandboxProxyMiddleware>();
        app.UseMiddleware<ApiKeyMiddleware>();
        app.UseMiddleware<ApiErrorMiddleware>();
        // The dashboard's terminal (Dashboard/DashboardTerminal.cs); sandbox WebSockets are forwarded by the proxy above.
        app.UseWebSockets();
        app.UseRouting();
        app.MapSandboxApi();
        app.MapTemplateApi();
        app.MapTemplateImportApi();
        app.MapTeamApi();
        Volumes.VolumeEndpoints.MapVolumeApi(app);
        app.MapAuditApi();
        Cluster.ClusterEndpoints.MapClusterApi(app);
        Cluster.ClusterTemplateReplicas.MapLayerEndpoint(app);
        app.MapMetricsEndpoint();
        Dashboard.DashboardEndpoints.MapDashboard(app);
        app.MapMcp(McpEndpoint.Path);
        app.MapFallback((HttpContext http) => ApiErrorMiddleware.WriteAsync(http, StatusCodes.Status404NotFound,
            $"no such route: {http.Request.Method} {http.Request.Path}"));
        return app;
    }

    /// <summary>
    /// Everything that must happen before the listener opens: the state directory, the schema, the first API key,
    /// and reconciling the store with the runtime. Returns the new key when one was made (to print once).
    /// </summary>
    public static async Task<string?> InitializeAsync(WebApplication app, CancellationToken cancellationToken)
    {
        var options = app.Services.GetRequiredService<DaemonOptions>();
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("paddockd runs on Linux");
        }
        // 0711: others may pass through but not list it. The database and the key file in it are 0600; the sandboxes'
        // root filesystems below it must be reachable by the ids a user-namespaced sandbox runs as (runc's rootfs
        // mount fails with EACCES under a 0700 directory, measured here).
        const UnixFileMode StateDirMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
        Directory.CreateDirectory(options.StateDir, StateDirMode);
        File.SetUnixFileMode(options.StateDir, StateDirMode);
        await app.Services.GetRequiredService<ISandboxStore>().InitializeAsync(cancellationToken);
        if (app.Services.GetService<PostgresStore>() is { } postgres)
        {
            // One daemon per database, or in cluster mode one daemon per node id (Cluster/).
            await (options.Cluster is { } cluster ? postgres.ClaimNodeAsync(cluster.NodeId, cancellationToken) : postgres.ClaimAsync(cancellationToken));
        }
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Paddock.Daemon.Auth");
        var key = await ApiKeyBootstrap.EnsureAsync(app.Services.GetRequiredService<IApiKeyStore>(), options.StateDir, app.Services.GetRequiredService<TimeProvider>(), logger, cancellationToken);
        await app.Services.GetRequiredService<TeamDirectory>().ReloadAsync(cancellationToken);
        // A sandbox whose agent exits on its own is ended at once, not at the next lost-sandbox sweep (issue 5).
        var sandboxes = app.Services.GetRequiredService<SandboxManager>();
        app.Services.GetRequiredService<RuntimeTiers>().OnAgentExited =
            id => sandboxes.KillAsync(id, "lost: its agent exited on its own (crashed, OOM-killed or killed from outside)", runningOnly: true);
        // Volumes before recovery: re-adopted sandboxes hold binds of them, and their mounts must be known to a delete.
        await app.Services.GetRequiredService<Volumes.VolumeManager>().InitializeAsync(cancellationToken);
        await app.Services.GetRequiredService<SandboxRecovery>().RunAsync(cancellationToken);
        await app.Services.GetRequiredService<Templates.TemplateRegistry>().SweepLeftoversAsync(cancellationToken);
        return key;
    }

    /// <summary>
    /// The state store and the stores that share its database: SQLite in the state directory unless
    /// <see cref="DaemonOptions.PostgresConnectionString"/> names a PostgreSQL database. One instance serves every
    /// store interface, so that InitializeAsync migrates the one schema all of them use.
    /// </summary>
    private static void AddStore(IServiceCollection services, DaemonOptions options)
    {
        var soleWriter = options.PostgresConnectionString is null;
        if (options.PostgresConnectionString is { } connectionString)
        {
            services.AddSingleton(sp => new PostgresStore(connectionString, sp.GetRequiredService<ILogger<PostgresStore>>(), options.Cluster?.NodeId));
            services.AddSingleton<StateStore>(sp => sp.GetRequiredService<PostgresStore>());
        }
        else
        {
            services.AddSingleton<StateStore>(sp => new SqliteStore(Path.Combine(options.StateDir, "paddock.db"), sp.GetRequiredService<ILogger<SqliteStore>>()));
        }
        services.AddSingleton<ISandboxStore>(sp => sp.GetRequiredService<StateStore>());
        services.AddSingleton<IApiKeyStore>(sp => sp.GetRequiredService<StateStore>());
        services.AddSingleton<ITeamStore>(sp => sp.GetRequiredService<StateStore>());
        services.AddSingleton<IStoreConnections>(sp => sp.GetRequiredService<StateStore>());
        services.AddSingleton<ITemplateRecords>(sp => new TemplateRecords(sp.GetRequiredService<IStoreConnections>(), soleWriter));
        services.AddSingleton<Audit.IAuditStore, Audit.AuditStore>();
    }
}
