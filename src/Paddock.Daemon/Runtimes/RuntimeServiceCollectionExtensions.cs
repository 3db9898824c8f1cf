using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Runtimes.Gvisor;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Runtimes.Runc;

namespace Paddock.Daemon.Runtimes;

/// <summary>Registration of the runtimes in the daemon's container.</summary>
internal static class RuntimeServiceCollectionExtensions
{
    /// <summary>
    /// Registers the runc tier as a <see cref="SandboxTier"/> (and as <see cref="RuncRuntime"/>); the daemon routes to
    /// it through <see cref="RuntimeTiers"/>. Settings, all
    /// optional: <c>StateDirectory</c> (default /var/lib/paddock), and in section <c>Runc</c>: <c>Runtime</c> (runc, crun or auto), <c>RuncBinary</c>,
    /// <c>AgentBinary</c>, <c>CgroupParent</c>, <c>CgroupManager</c> (cgroupfs or systemd), <c>StartTimeoutSeconds</c>, <c>NoNewPrivileges</c>; in section
    /// <c>Runc:Network</c>: <c>Enabled</c> (default true), <c>Pool</c>, <c>TableName</c>, <c>InterfacePrefix</c>,
    /// <c>ProxyPort</c>, <c>DnsPort</c>, <c>DnsServers</c> (see <see cref="Networking.NetworkOptions"/>).
    /// </summary>
    public static IServiceCollection AddRuncRuntime(this IServiceCollection services, IConfiguration configuration)
    {
        var options = ReadOptions(configuration);
        services.AddSingleton(options);
        services.AddSingleton(sp => new RuncRuntime(
            options,
            AgentBinaryLocator.Resolve(options.AgentBinary),
            sp.GetRequiredService<ILogger<RuncRuntime>>(),
            ConnectionSink(sp)));
        services.AddSingleton(sp => SandboxTier.Of(sp.GetRequiredService<RuncRuntime>()));
        return services;
    }

    /// <summary>
    /// Registers the gVisor tier as a <see cref="SandboxTier"/>: its runtime when <see cref="GvisorProbe"/> finds a
    /// usable runsc, else the tier as unavailable with the probe's reason (the daemon logs it and serves the other
    /// tiers). Settings, all optional, in section <c>Gvisor</c>: <c>RunscBinary</c>, <c>Platform</c> (systrap or
    /// ptrace), <c>StateDirectory</c> (default STATE/gvisor), <c>DebugLogDirectory</c>, <c>CgroupParent</c>, <c>AgentBinary</c> (default
    /// <c>Runc:AgentBinary</c>), <c>StartTimeoutSeconds</c>, <c>NoNewPrivileges</c>, <c>EnforceDiskSize</c>, <c>DiskStockDepth</c>; in
    /// <c>Gvisor:Network</c>: <c>Pool</c>, <c>TableName</c>, <c>InterfacePrefix</c>, <c>ProxyPort</c>. A daemon over
    /// another state directory than the default derives its own cgroup parent, table, prefix and pool, as the runc
    /// tier does.
    /// </summary>
    public static IServiceCollection AddGvisorRuntime(this IServiceCollection services, IConfiguration configuration)
    {
        var options = ReadGvisorOptions(configuration);
        var availability = GvisorProbe.Probe(options);
        if (!availability.IsAvailable)
        {
            services.AddSingleton(SandboxTier.Unavailable(GvisorRuntime.TierName, availability.Reason!));
            return services;
        }
        services.AddSingleton(options);
        // Deferred: its mounts, disk stock and nftables table are made only when a sandbox asks for gVisor, or when a
        // previous daemon left gVisor state (its sandboxes or leftovers) for recovery to find.
        services.AddSingleton(sp => SandboxTier.Deferred(
            GvisorRuntime.TierName,
            () => new GvisorRuntime(
                options,
                AgentBinaryLocator.Resolve(configuration["Gvisor:AgentBinary"] ?? configuration["Runc:AgentBinary"]),
                sp.GetRequiredService<ILogger<GvisorRuntime>>(),
                ConnectionSink(sp)),
            () => Directory.Exists(options.StateDirectory)));
        return services;
    }

    /// <summary>
    /// The audit trail's sink for the tiers' connection observers, or null (no observer, no NFLOG socket, no conntrack
    /// events) when the audit trail is off (<c>--audit-max-events 0</c>).
    /// </summary>
    private static Networking.IConnectionSink? ConnectionSink(IServiceProvider sp) =>
        sp.GetService<DaemonOptions>() is { AuditMaxEventsPerSandbox: > 0 } ? sp.GetService<Networking.IConnectionSink>() : null;

    internal static GvisorOptions ReadGvisorOptions(IConfiguration configuration)
    {
        var section = configuration.GetSection("Gvisor");
        var defaults = new GvisorOptions();
        var daemonState = configuration["StateDirectory"] ?? new RuncOptions().StateDirectory;
        var isDefaultDaemon = Path.GetFullPath(daemonState).TrimEnd('/') == Path.GetFullPath(new RuncOptions().StateDirectory).TrimEnd('/');
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(daemonState))));
        var network = defaults.Network;
        if (!isDefaultDaemon)
        {
            // Its own /22 of 10.210.0.0/15, apart from the runc tier's 10.201/16 (default) and 10.202.0.0/15 (others),
            // the gVisor default's 10.208/16 and the tests' and bench's own ranges (10.199, 10.200, 10.203-10.206, 10.209).
            var n = Convert.ToInt32(hash[..4], 16) % 512;
            network = network with
            {
                TableName = "paddock_gvisor_" + hash[..8],
                InterfacePrefix = "pgv" + hash[..5],
                Pool = $"10.{(210 + n / 256).ToString(CultureInfo.InvariantCulture)}.{(n % 256 / 4 * 4).ToString(CultureInfo.InvariantCulture)}.0/22",
                PoolRange = "10.210.0.0/15",
            };
        }
        var net = section.GetSection("Network");
        return defaults with
        {
            StateDirectory = section["StateDirectory"] ?? Path.Combine(daemonState, "gvisor"),
            RunscBinary = section["RunscBinary"] ?? defaults.RunscBinary,
            Platform = section["Platform"] is { } platform
                ? Enum.TryParse<GvisorPlatform>(platform, ignoreCase: true, out var p) && Enum.IsDefined(p) ? p
                    : throw new ArgumentException($"Gvisor:Platform is systrap or ptrace, not '{platform}'")
                : defaults.Platform,
            CgroupParent = section["CgroupParent"] ?? (isDefaultDaemon ? defaults.CgroupParent : $"{defaults.CgroupParent}-{hash[..10]}"),
            DebugLogDirectory = section["DebugLogDirectory"],
            StartTimeout = section["StartTimeoutSeconds"] is { } s ? TimeSpan.FromSeconds(double.Parse(s, CultureInfo.InvariantCulture)) : defaults.StartTimeout,
            NoNewPrivileges = section["NoNewPrivileges"] is { } nnp ? bool.Parse(nnp) : defaults.NoNewPrivileges,
            EnforceDiskSize = section["EnforceDiskSize"] is { } eds ? bool.Parse(eds) : defaults.EnforceDiskSize,
            AgentLogBytes = section["AgentLogBytes"] is { } alb ? long.Parse(alb, CultureInfo.InvariantCulture) : defaults.AgentLogBytes,
            DiskStockDepth = ReadDiskStockDepth(section, defaults.DiskStockDepth),
            Network = network with
            {
                Pool = net["Pool"] ?? network.Pool,
                PoolRange = net["Pool"] is null ? network.PoolRange : null,
                TableName = net["TableName"] ?? network.TableName,
                InterfacePrefix = net["InterfacePrefix"] ?? network.InterfacePrefix,
                ProxyPort = net["ProxyPort"] is { } port ? int.Parse(port, CultureInfo.InvariantCulture) : network.ProxyPort,
            },
        };
    }

    internal static RuncOptions ReadOptions(IConfiguration configuration)
    {
        var section = configuration.GetSection("Runc");
        var defaults = new RuncOptions();
        var stateDirectory = section["StateDirectory"] ?? configuration["StateDirectory"] ?? defaults.StateDirectory;
        return new RuncOptions
        {
            StateDirectory = stateDirectory,
            Network = ReadNetworkOptions(section.GetSection("Network"), stateDirectory, defaults.StateDirectory),
            RuncBinary = section["RuncBinary"] ?? defaults.RuncBinary,
            Runtime = section["Runtime"] is { } runtime
                ? Enum.TryParse<OciRuntimeKind>(runtime, ignoreCase: true, out var r) && Enum.IsDefined(r) && !int.TryParse(runtime, out _) ? r
                    : throw new ArgumentException($"Runc:Runtime is runc, crun or auto, not '{runtime}'")
                : defaults.Runtime,
            AgentBinary = section["AgentBinary"] ?? defaults.AgentBinary,
            CgroupParent = section["CgroupParent"] ?? DefaultCgroupParent(stateDirectory, defaults),
            CgroupManager = section["CgroupManager"] is { } manager
                ? Enum.TryParse<CgroupManager>(manager, ignoreCase: true, out var m) && Enum.IsDefined(m) && !int.TryParse(manager, out _) ? m
                    : throw new ArgumentException($"Runc:CgroupManager is cgroupfs or systemd, not '{manager}'")
                : defaults.CgroupManager,
            StartTimeout = section["StartTimeoutSeconds"] is { } s
                ? TimeSpan.FromSeconds(double.Parse(s, CultureInfo.InvariantCulture))
                : defaults.StartTimeout,
            NoNewPrivileges = section["NoNewPrivileges"] is { } n ? bool.Parse(n) : defaults.NoNewPrivileges,
            EnforceDiskSize = section["EnforceDiskSize"] is { } eds ? bool.Parse(eds) : defaults.EnforceDiskSize,
            DiskStockDepth = ReadDiskStockDepth(section, defaults.DiskStockDepth),
        };
    }

    /// <summary><c>Runc:DiskStockDepth</c> / <c>Gvisor:DiskStockDepth</c>: disks made ahead per size, 0 to 16.</summary>
    private static int ReadDiskStockDepth(IConfigurationSection section, int fallback) =>
        section["DiskStockDepth"] is not { } depth ? fallback
            : int.TryParse(depth, NumberStyles.None, CultureInfo.InvariantCulture, out var d) && d <= 16 ? d
            : throw new ArgumentException($"{section.Path}:DiskStockDepth is a whole number from 0 to 16, not '{depth}'");

    /// <summary>
    /// <c>paddock</c> for the default state directory; for any other (a test daemon, a second instance) a parent of its
    /// own derived from the directory. The runtime removes, at start, every sandbox cgroup under its parent that its
    /// own runc root does not know, so two daemons sharing a parent killed each other's sandboxes.
    /// </summary>
    internal static string DefaultCgroupParent(string stateDirectory, RuncOptions defaults)
    {
        var full = Path.GetFullPath(stateDirectory).TrimEnd('/');
        if (full == Path.GetFullPath(defaults.StateDirectory).TrimEnd('/'))
        {
            return defaults.CgroupParent;
        }
        var hash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(full));
        return $"{defaults.CgroupParent}-{Convert.ToHexStringLower(hash)[..10]}";
    }

    /// <summary>
    /// Null when <c>Enabled</c> is false. A daemon over another state directory than the default (a test daemon,
    /// a second instance) gets its own table, interface prefix and /22 of 10.202.0.0/15, derived from the directory,
    /// unless they are configured: two daemons sharing a table would remove each other's rules at start.
    /// </summary>
    internal static Networking.NetworkOptions? ReadNetworkOptions(IConfiguration section, string stateDirectory, string defaultStateDirectory)
    {
        if (section["Enabled"] is { } enabled && !bool.Parse(enabled))
        {
            return null;
        }
        var defaults = new Networking.NetworkOptions();
        if (Path.GetFullPath(stateDirectory).TrimEnd('/') != defaultStateDirectory)
        {
            var hash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(stateDirectory)));
            var n = (hash[0] << 8 | hash[1]) % 512;
            defaults = defaults with
            {
                TableName = "paddock_" + Convert.ToHexStringLower(hash.AsSpan(0, 4)),
                InterfacePrefix = "pd" + Convert.ToHexStringLower(hash.AsSpan(0, 3)),
                Pool = $"10.{(202 + n / 256).ToString(CultureInfo.InvariantCulture)}.{(n % 256 / 4 * 4).ToString(CultureInfo.InvariantCulture)}.0/22",
                PoolRange = "10.202.0.0/15",
            };
        }
        return defaults with
        {
            Pool = section["Pool"] ?? defaults.Pool,
            PoolRange = section["Pool"] is null ? defaults.PoolRange : null,
            TableName = section["TableName"] ?? defaults.TableName,
            InterfacePrefix = section["InterfacePrefix"] ?? defaults.InterfacePrefix,
            ProxyPort = section["ProxyPort"] is { } port ? int.Parse(port, CultureInfo.InvariantCulture) : defaults.ProxyPort,
            DnsPort = section["DnsPort"] is { } dnsPort ? int.Parse(dnsPort, CultureInfo.InvariantCulture) : defaults.DnsPort,
            // A list (DnsServers:0, DnsServers:1 ...), or one comma-separated value.
            DnsServers = section.GetSection("DnsServers").GetChildren().Select(c => c.Value).OfType<string>()
                .Concat((section["DnsServers"] ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList(),
        };
    }
}

/// <summary>Finds the published agent binary when no path is configured.</summary>
internal static class AgentBinaryLocator
{
    /// <summary>Where <c>dotnet publish src/Paddock.Agent -c Release -o artifacts/agent</c> puts it, relative to the repository.</summary>
    public const string RepositoryPath = "artifacts/agent/paddock-agent";

    /// <summary>
    /// <paramref name="configured"/> when set; else <c>paddock-agent</c> next to the daemon; else
    /// <see cref="RepositoryPath"/> in the nearest directory above the daemon or the working directory that has
    /// it. When none exists, the first candidate under the repository, so that the error names a useful path.
    /// </summary>
    public static string Resolve(string? configured)
    {
        if (!string.IsNullOrEmpty(configured))
        {
            return Path.GetFullPath(configured);
        }
        var nextToDaemon = Path.Combine(AppContext.BaseDirectory, "paddock-agent");
        if (File.Exists(nextToDaemon))
        {
            return nextToDaemon;
        }
        string? first = null;
        foreach (var start in (string[])[AppContext.BaseDirectory, Environment.CurrentDirectory])
        {
            var dir = new DirectoryInfo(start);
            for (var depth = 0; dir is not null && depth < 12; depth++, dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, RepositoryPath);
                if (File.Exists(candidate))
                {
                    return candidate;
                }
                // A repository root has .git (a directory, or a file in a worktree).
                if (first is null && Path.Exists(Path.Combine(dir.FullName, ".git")))
                {
                    first = candidate;
                }
            }
        }
        return first ?? Path.Combine(Environment.CurrentDirectory, RepositoryPath);
    }
}
