using Microsoft.Extensions.Logging;
using Paddock.Daemon.Networking;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// The start-up sweep both tiers run (<see cref="ISandboxRuntime.CleanupLeftoversAsync"/>): every sandbox id that
/// anything on the host still names (the runtime's container list, the sandbox and netns directories, cgroups, network
/// records) is either alive, paused (its complete <c>paused.json</c> marker keeps it; what an interrupted pause or
/// resume still held is released by the tier's settle step), busy with a start of this instance, or a leftover that is
/// destroyed whole. The tiers differ only in how they decide "alive" and in what settling and destroying mean.
/// </summary>
internal sealed class LeftoverSweep(
    ISandboxDirectories directories,
    KeyedLock locks,
    Func<SandboxLayout, CancellationToken, Task> settlePaused,
    Func<SandboxLayout, CancellationToken, Task> destroy,
    ILogger logger)
{
    /// <summary>The ids named by the tier's own directories, cgroups and (when it has one) network records.</summary>
    public async Task<HashSet<string>> CandidatesAsync(
        IEnumerable<string> containerIds, ISandboxCgroups cgroups, SandboxNetworks? network, CancellationToken cancellationToken)
    {
        var candidates = new HashSet<string>(containerIds, StringComparer.Ordinal);
        candidates.UnionWith(Ids(directories.SandboxesDirectory, directories: true));
        candidates.UnionWith(Ids(directories.NetnsDirectory, directories: false));
        candidates.UnionWith(cgroups.ExistingSandboxIds());
        if (network is not null)
        {
            await network.EnsureReadyAsync(cancellationToken);
            candidates.UnionWith(network.RecordedSandboxIds());
        }
        return candidates;
    }

    /// <summary>Settles the paused and destroys the rest of <paramref name="candidates"/> not in <paramref name="alive"/>; returns the destroyed ids.</summary>
    public async Task<IReadOnlyList<string>> RunAsync(
        IEnumerable<string> candidates, IReadOnlySet<string> alive, CancellationToken cancellationToken)
    {
        var removed = new List<string>();
        foreach (var id in candidates.Order(StringComparer.Ordinal))
        {
            if (locks.IsBusy(id) || !SandboxLayout.IsValidId(id))
            {
                continue;
            }
            var layout = new SandboxLayout(directories, id);
            var paused = File.Exists(layout.PausedFile);
            if (!paused && alive.Contains(id))
            {
                continue;
            }
            try
            {
                using var held = await locks.AcquireAsync(id, cancellationToken);
                if (paused)
                {
                    await settlePaused(layout, cancellationToken);
                    RuntimeLog.PausedSettled(logger, id);
                    continue;
                }
                await destroy(layout, cancellationToken);
                removed.Add(id);
                RuntimeLog.LeftoverRemoved(logger, id);
            }
            catch (IOException ex)
            {
                RuntimeLog.LeftoverRemovalFailed(logger, id, ex);
            }
        }
        return removed;
    }

    /// <summary>The sandboxes under <paramref name="directories"/> that carry a complete pause marker.</summary>
    public static IReadOnlyList<PausedSandbox> PausedIn(ISandboxDirectories directories)
    {
        var paused = new List<PausedSandbox>();
        foreach (var id in Ids(directories.SandboxesDirectory, directories: true))
        {
            if (PauseMarker.TryRead(new SandboxLayout(directories, id)) is { } marker)
            {
                paused.Add(new PausedSandbox(id, marker.Memory, marker.PausedAt));
            }
        }
        return paused;
    }

    // Staging directories of the agent bundle or partial names are not sandbox ids.
    private static IEnumerable<string> Ids(string directory, bool directories)
    {
        if (!Directory.Exists(directory))
        {
            return [];
        }
        var entries = directories ? Directory.EnumerateDirectories(directory) : Directory.EnumerateFiles(directory);
        return entries.Select(Path.GetFileName).OfType<string>().Where(SandboxLayout.IsValidId).ToList();
    }
}
