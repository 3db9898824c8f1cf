using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Runtimes.Runc;

namespace Paddock.Daemon.Runtimes;

/// <summary>Registration of the runtimes in the daemon's container.</summary>
internal static class RuntimeServiceCollectionExtensions
{
    /// <summary>
    /// Registers the runc tier as <see cref="ISandboxRuntime"/> (and as <see cref="RuncRuntime"/>). Settings, all
    /// optional: <c>StateDirectory</c> (default /var/lib/paddock), and in section <c>Runc</c>: <c>RuncBinary</c>,
    /// <c>AgentBinary</c>, <c>CgroupParent</c>, <c>StartTimeoutSeconds</c>, <c>NoNewPrivileges</c>.
    /// </summary>
    public static IServiceCollection AddRuncRuntime(this IServiceCollection services, IConfiguration configuration)
    {
        var options = ReadOptions(configuration);
        services.AddSingleton(options);
        services.AddSingleton(sp => new RuncRuntime(
            options,
            AgentBinaryLocator.Resolve(options.AgentBinary),
            sp.GetRequiredService<ILogger<RuncRuntime>>()));
        services.AddSingleton<ISandboxRuntime>(sp => sp.GetRequiredService<RuncRuntime>());
        return services;
    }

    internal static RuncOptions ReadOptions(IConfiguration configuration)
    {
        var section = configuration.GetSection("Runc");
        var defaults = new RuncOptions();
        return new RuncOptions
        {
            StateDirectory = section["StateDirectory"] ?? configuration["StateDirectory"] ?? defaults.StateDirectory,
            RuncBinary = section["RuncBinary"] ?? defaults.RuncBinary,
            AgentBinary = section["AgentBinary"] ?? defaults.AgentBinary,
            CgroupParent = section["CgroupParent"] ?? defaults.CgroupParent,
            StartTimeout = section["StartTimeoutSeconds"] is { } s
                ? TimeSpan.FromSeconds(double.Parse(s, CultureInfo.InvariantCulture))
                : defaults.StartTimeout,
            NoNewPrivileges = section["NoNewPrivileges"] is { } n ? bool.Parse(n) : defaults.NoNewPrivileges,
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
