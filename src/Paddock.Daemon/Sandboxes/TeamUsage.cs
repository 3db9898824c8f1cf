using System.Globalization;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Sandboxes;

/// <summary>What one team's running (and starting) sandboxes hold together.</summary>
internal readonly record struct TeamTotals(int Sandboxes, int Cpus, long MemoryMB);

/// <summary>
/// Per-team totals of the sandboxes that are running or starting. A create reserves its share before the runtime
/// starts anything, under one lock, so two creates racing for a team's last slot cannot both get it; a failed start and
/// a kill give the share back.
/// </summary>
internal sealed class TeamUsage
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, TeamTotals> _totals = new(StringComparer.Ordinal);

    public TeamTotals Of(string teamId)
    {
        lock (_lock)
        {
            return _totals.GetValueOrDefault(teamId);
        }
    }

    /// <summary>Reserves a sandbox's share, or throws <see cref="TeamLimitException"/> naming the first limit it would pass.</summary>
    public void Reserve(string teamId, TeamLimits limits, int cpus, int memoryMB)
    {
        lock (_lock)
        {
            var now = _totals.GetValueOrDefault(teamId);
            if (limits.MaxSandboxes is { } maxSandboxes && now.Sandboxes + 1 > maxSandboxes)
            {
                throw new TeamLimitException("maxSandboxes", string.Create(CultureInfo.InvariantCulture,
                    $"team '{teamId}' already runs {now.Sandboxes} sandboxes, its limit of concurrent sandboxes (maxSandboxes) is {maxSandboxes}; kill one or raise the limit"));
            }
            if (limits.MaxCpus is { } maxCpus && now.Cpus + cpus > maxCpus)
            {
                throw new TeamLimitException("maxCpus", string.Create(CultureInfo.InvariantCulture,
                    $"team '{teamId}' already uses {now.Cpus} vCPUs and this sandbox asks for {cpus}; its limit on total vCPUs (maxCpus) is {maxCpus}"));
            }
            if (limits.MaxMemoryMB is { } maxMemory && now.MemoryMB + memoryMB > maxMemory)
            {
                throw new TeamLimitException("maxMemoryMB", string.Create(CultureInfo.InvariantCulture,
                    $"team '{teamId}' already uses {now.MemoryMB} MiB of memory and this sandbox asks for {memoryMB} MiB; its limit on total memory (maxMemoryMB) is {maxMemory} MiB"));
            }
            _totals[teamId] = new TeamTotals(now.Sandboxes + 1, now.Cpus + cpus, now.MemoryMB + memoryMB);
        }
    }

    /// <summary>Counts a sandbox without checking limits (one found running at start: it exists whatever the limits say).</summary>
    public void Add(string teamId, int cpus, int memoryMB)
    {
        lock (_lock)
        {
            var now = _totals.GetValueOrDefault(teamId);
            _totals[teamId] = new TeamTotals(now.Sandboxes + 1, now.Cpus + cpus, now.MemoryMB + memoryMB);
        }
    }

    public void Release(string teamId, int cpus, int memoryMB)
    {
        lock (_lock)
        {
            var now = _totals.GetValueOrDefault(teamId);
            var next = new TeamTotals(now.Sandboxes - 1, now.Cpus - cpus, now.MemoryMB - memoryMB);
            if (next.Sandboxes <= 0)
            {
                _totals.Remove(teamId);
            }
            else
            {
                _totals[teamId] = next;
            }
        }
    }
}
