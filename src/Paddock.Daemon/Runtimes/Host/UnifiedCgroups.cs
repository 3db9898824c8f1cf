using System.Globalization;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// The unified cgroup v2 hierarchy (Documentation/admin-guide/cgroup-v2.rst): one tree, one directory per sandbox,
/// the freezer and the kill switch built into every cgroup (<c>cgroup.freeze</c> with <c>frozen</c> in
/// <c>cgroup.events</c>, <c>cgroup.kill</c> since Linux 5.14), OOM kills counted in <c>memory.events</c>, and a
/// controller usable in a cgroup only once its parent lists it in <c>cgroup.subtree_control</c>.
/// </summary>
/// <remarks>
/// Where the sandbox's cgroup is depends on who makes it: with the cgroupfs manager the runtime creates
/// ROOT/Parent/ID; with the systemd manager systemd creates the scope paddock-ID.scope in the slice Parent.slice, and
/// the daemon never creates cgroups above it (systemd owns those). What ran for real on these hybrid machines is the
/// cgroup2 hierarchy without controllers (freeze, kill, procs, events, threaded children; UnifiedCgroupsTests); the
/// controller files (cpu.*, memory.*, pids.*) are read as the kernel documentation lays them out.
/// </remarks>
internal sealed class UnifiedCgroups : ISandboxCgroups
{
    private readonly string _root;
    private readonly CgroupManager _manager;
    private readonly Lazy<bool> _swap;

    public UnifiedCgroups(string mountPoint, string parent, CgroupManager manager)
    {
        _root = mountPoint;
        _manager = manager;
        Parent = parent.Trim('/');
        if (manager == CgroupManager.Systemd && (Parent.Contains('/', StringComparison.Ordinal) || Parent.Length == 0))
        {
            throw new ArgumentException($"with the systemd cgroup manager the cgroup parent names a slice (one word, e.g. 'paddock'), not '{parent}'");
        }
        _swap = new Lazy<bool>(DetectSwapAccounting);
    }

    public string Mode => "unified";

    public string Parent { get; }

    /// <summary>The mount point of the hierarchy.</summary>
    public string Root => _root;

    /// <summary>The directory that holds the sandboxes' cgroups.</summary>
    public string ParentDirectory => _manager == CgroupManager.Systemd
        ? Path.Combine(_root, Cgroups.SystemdSlicePath(Parent + ".slice"))
        : Path.Combine(_root, Parent);

    public string OciPath(string sandboxId) => _manager == CgroupManager.Systemd
        ? $"{Parent}.slice:{Cgroups.SystemdScopePrefix}:{sandboxId}"
        : $"/{Parent}/{sandboxId}";

    /// <summary>The sandbox's cgroup directory (whether or not it exists).</summary>
    public string Directory(string sandboxId) => _manager == CgroupManager.Systemd
        ? Path.Combine(ParentDirectory, $"{Cgroups.SystemdScopePrefix}-{sandboxId}.scope")
        : Path.Combine(ParentDirectory, sandboxId);

    public bool HasSwapAccounting => _swap.Value;

    /// <summary>
    /// memory.swap.max exists in every non-root cgroup with the memory controller when the kernel accounts swap; the
    /// daemon's own cgroup (from /proc/self/cgroup, "0::/PATH") is such a cgroup on a v2 host.
    /// </summary>
    private bool DetectSwapAccounting()
    {
        try
        {
            var own = File.ReadLines("/proc/self/cgroup").FirstOrDefault(l => l.StartsWith("0::", StringComparison.Ordinal));
            return own is not null && File.Exists(Path.Combine(_root, own[3..].TrimStart('/'), "memory.swap.max"));
        }
        catch (IOException)
        {
            return false;
        }
    }

    public IEnumerable<string> ExistingSandboxIds()
    {
        var parent = ParentDirectory;
        if (!System.IO.Directory.Exists(parent))
        {
            return [];
        }
        var names = System.IO.Directory.EnumerateDirectories(parent).Select(Path.GetFileName).OfType<string>();
        if (_manager == CgroupManager.Systemd)
        {
            var prefix = Cgroups.SystemdScopePrefix + "-";
            return names.Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && n.EndsWith(".scope", StringComparison.Ordinal))
                .Select(n => n[prefix.Length..^".scope".Length])
                .ToList();
        }
        return names.ToList();
    }

    /// <summary>With the cgroupfs manager the parent is the daemon's; a systemd slice is systemd's to remove.</summary>
    public void RemoveParentIfEmpty()
    {
        if (_manager == CgroupManager.Cgroupfs)
        {
            Cgroups.RemoveIfNoChildren(ParentDirectory);
        }
    }

    public async Task RemoveAsync(string sandboxId, CancellationToken cancellationToken)
    {
        await Cgroups.RemoveTreeAsync(sandboxId, Directory(sandboxId), depth: 0, Kill, cancellationToken);
    }

    /// <summary>
    /// Kills every process in <paramref name="directory"/> and below: one write of cgroup.kill (Linux 5.14+), which
    /// also reaches frozen tasks and cannot miss a fork racing with it. SIGKILL to each pid listed instead where
    /// cgroup.kill is missing (older kernels) or refused: a threaded cgroup (the pid reserve's S/work) answers
    /// EOPNOTSUPP (seen on 6.18: UnifiedCgroupsLiveTests), though a kill of its threaded root reaches it.
    /// </summary>
    private static void Kill(string directory)
    {
        try
        {
            File.WriteAllText(Path.Combine(directory, "cgroup.kill"), "1");
            return;
        }
        catch (DirectoryNotFoundException)
        {
            return; // gone
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // no cgroup.kill, or a threaded cgroup: signal each process below
        }
        foreach (var pid in Cgroups.PidsBelow(directory))
        {
            Signals.Send(pid, Signals.SIGKILL);
        }
    }

    public bool SetCpuWeight(string sandboxId, bool background)
    {
        var dir = Directory(sandboxId);
        if (_manager == CgroupManager.Cgroupfs)
        {
            // Made before the runtime's start (a pool member starts in the background): the cpu controller must be
            // enabled down to the parent for cpu.weight to exist; the runtime enables the rest when it runs.
            if (!EnableControllers(ParentDirectory, "cpu"))
            {
                return false;
            }
            System.IO.Directory.CreateDirectory(dir);
        }
        // Under systemd the scope is systemd's to create: only a running sandbox's weight is set.
        var weight = Path.Combine(dir, "cpu.weight");
        if (!File.Exists(weight))
        {
            return false;
        }
        File.WriteAllText(weight, (background ? Cgroups.BackgroundCpuWeight : Cgroups.NormalCpuWeight).ToString(CultureInfo.InvariantCulture));
        return true;
    }

    /// <summary>
    /// Creates <paramref name="directory"/> (below the root) and enables <paramref name="controller"/> in the
    /// subtree_control of every level from the root down to it, so that its children get the controller's files.
    /// False when the hierarchy does not offer the controller (cgroup.controllers of the root lacks it).
    /// </summary>
    internal bool EnableControllers(string directory, string controller)
    {
        var relative = Path.GetRelativePath(_root, directory);
        var levels = new List<string> { _root };
        if (relative != ".")
        {
            var current = _root;
            foreach (var part in relative.Split('/'))
            {
                current = Path.Combine(current, part);
                levels.Add(current);
            }
        }
        foreach (var level in levels)
        {
            System.IO.Directory.CreateDirectory(level);
            if (!Words(Path.Combine(level, "cgroup.controllers")).Contains(controller))
            {
                return false;
            }
            if (!Words(Path.Combine(level, "cgroup.subtree_control")).Contains(controller))
            {
                File.WriteAllText(Path.Combine(level, "cgroup.subtree_control"), "+" + controller);
            }
        }
        return true;
    }

    private static HashSet<string> Words(string file)
    {
        try
        {
            return File.ReadAllText(file).Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return [];
        }
    }

    /// <summary>
    /// Writes 1 to cgroup.freeze and waits until cgroup.events says <c>frozen 1</c>: the kernel reports that only once
    /// every task below has stopped (cgroup-v2.rst, "Core Interface Files"). The same bound as v1: 1, 2, 4, 8, then
    /// 10 ms steps, 15 reads, about 100 ms, then thawed again and false.
    /// </summary>
    public async Task<bool> FreezeAsync(string sandboxId, CancellationToken cancellationToken)
    {
        var dir = Directory(sandboxId);
        var file = Path.Combine(dir, "cgroup.freeze");
        if (!File.Exists(file))
        {
            return false;
        }
        try
        {
            File.WriteAllText(file, "1");
            var delay = 1;
            for (var attempt = 0; attempt < 15; attempt++)
            {
                if (IsFrozen(sandboxId) == true)
                {
                    return true;
                }
                await Task.Delay(delay, cancellationToken);
                delay = Math.Min(delay * 2, 10);
            }
            Thaw(sandboxId);
            return false;
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return false; // destroyed meanwhile
        }
        catch
        {
            // Whatever went wrong, never leave it frozen behind the caller's back.
            Thaw(sandboxId);
            throw;
        }
    }

    public void Thaw(string sandboxId)
    {
        try
        {
            File.WriteAllText(Path.Combine(Directory(sandboxId), "cgroup.freeze"), "0");
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            // gone: nothing of it is frozen
        }
    }

    public bool? IsFrozen(string sandboxId)
    {
        try
        {
            return Cgroups.ReadKeyValues(Path.Combine(Directory(sandboxId), "cgroup.events")).TryGetValue("frozen", out var frozen) ? frozen == 1 : null;
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    public IReadOnlyList<int> ProcessesOf(string sandboxId) => Cgroups.PidsBelow(Directory(sandboxId));

    /// <summary>
    /// Kills the sandbox's cgroup (cgroup.kill, else SIGKILL to each pid) until it shows no process. A frozen task
    /// dies of SIGKILL on the v2 freezer (cgroup-v2.rst: "SIGKILL ... frozen processes can be killed"), so no thaw.
    /// 400 x 5 ms bounds the wait for the exits to 2 s.
    /// </summary>
    public async Task KillAllAsync(string sandboxId, CancellationToken cancellationToken)
    {
        var dir = Directory(sandboxId);
        for (var attempt = 0; attempt < 400; attempt++)
        {
            if (Cgroups.PidsBelow(dir).Count == 0)
            {
                return;
            }
            Kill(dir);
            await Task.Delay(5, cancellationToken);
        }
        throw new IOException($"processes of sandbox '{sandboxId}' were still running 2 s after SIGKILL: {string.Join(", ", Cgroups.PidsBelow(dir))}");
    }

    /// <summary>
    /// cpu.stat <c>usage_usec</c> (present in every cgroup), cpu.max (<c>$MAX $PERIOD</c>, MAX <c>max</c> when
    /// unlimited), memory.current, memory.stat <c>inactive_file</c> and memory.max (<c>max</c>: unlimited). Null without
    /// the memory controller, or when the cgroup is gone.
    /// </summary>
    public CgroupSample? Sample(string sandboxId)
    {
        var dir = Directory(sandboxId);
        try
        {
            if (!File.Exists(Path.Combine(dir, "memory.current")))
            {
                return null;
            }
            var cpu = Cgroups.ReadKeyValues(Path.Combine(dir, "cpu.stat"));
            var cores = (double)Environment.ProcessorCount;
            var cpuMax = Path.Combine(dir, "cpu.max");
            if (File.Exists(cpuMax))
            {
                var parts = File.ReadAllText(cpuMax).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                if (parts.Length == 2 && parts[0] != "max"
                    && long.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var quota)
                    && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var period) && quota > 0 && period > 0)
                {
                    cores = (double)quota / period;
                }
            }
            var stat = Cgroups.ReadKeyValues(Path.Combine(dir, "memory.stat"));
            var max = File.ReadAllText(Path.Combine(dir, "memory.max")).Trim();
            return new CgroupSample(
                Timestamp: DateTimeOffset.UtcNow,
                CpuUsageNanoseconds: cpu.GetValueOrDefault("usage_usec") * 1000,
                CpuQuotaCores: cores,
                MemoryUsageBytes: Cgroups.ReadLong(Path.Combine(dir, "memory.current")),
                MemoryInactiveFileBytes: stat.GetValueOrDefault("inactive_file"),
                MemoryLimitBytes: max == "max" ? long.MaxValue : long.Parse(max, CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
        {
            return null; // the sandbox went away between two reads
        }
    }

    public long? OomKills(string sandboxId)
    {
        try
        {
            return Cgroups.ReadKeyValues(Path.Combine(Directory(sandboxId), "memory.events")).TryGetValue("oom_kill", out var n) ? n : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public string? PidsDirectory(string sandboxId)
    {
        var dir = Directory(sandboxId);
        return File.Exists(Path.Combine(dir, "pids.max")) ? dir : null;
    }

    /// <summary>
    /// A v2 process has all its threads in one cgroup unless they are in a threaded subtree (cgroup-v2.rst
    /// "Threads"): the child is made <c>threaded</c>, which turns the sandbox's cgroup into the subtree's root (its
    /// processes, the agent, stay there and memory still counts them all), and pids, a threaded controller, is then
    /// enabled for the child; the no-internal-process rule does not apply to threaded controllers.
    /// </summary>
    public void CreateThreadCgroup(string directory)
    {
        System.IO.Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "cgroup.type"), "threaded");
        var parent = Path.GetDirectoryName(directory)!;
        if (Words(Path.Combine(parent, "cgroup.controllers")).Contains("pids")
            && !Words(Path.Combine(parent, "cgroup.subtree_control")).Contains("pids"))
        {
            File.WriteAllText(Path.Combine(parent, "cgroup.subtree_control"), "+pids");
        }
    }

    public void MoveThread(string directory, int tid) =>
        File.WriteAllText(Path.Combine(directory, "cgroup.threads"), tid.ToString(CultureInfo.InvariantCulture));
}
