using System.Globalization;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// cgroup v1, as runc's cgroupfs driver uses it for a container with an absolute cgroupsPath: one directory per
/// mounted hierarchy. On these build machines (FACTS.md) that is the hybrid layout: the v1 hierarchies (cpu,
/// cpuacct, cpuset, memory, devices, freezer, blkio, pids and name=systemd, each mounted on its own) plus the
/// near-empty cgroup2 at /sys/fs/cgroup/unified, which runc 1.1 also joins.
/// </summary>
internal sealed class LegacyCgroups : ISandboxCgroups
{
    private readonly IReadOnlyList<Hierarchy> _hierarchies;

    private LegacyCgroups(IReadOnlyList<Hierarchy> hierarchies, string parent, string mode)
    {
        _hierarchies = hierarchies;
        Parent = parent.Trim('/');
        Mode = mode;
    }

    /// <summary>One mounted hierarchy: its mount point and the v1 controllers it carries (none for cgroup2).</summary>
    private sealed record Hierarchy(string MountPoint, IReadOnlySet<string> Controllers);

    public string Mode { get; }

    public string Parent { get; }

    /// <summary>The v1 hierarchies on this host (tests that look at v1 files directly; the daemon uses <see cref="Cgroups.Detect"/>).</summary>
    public static LegacyCgroups Discover(string parent)
    {
        var mounts = MountTable.Read();
        return FromMounts(mounts, parent, mounts.Any(m => m.FsType == "cgroup2") ? "hybrid" : "v1");
    }

    internal static LegacyCgroups FromMounts(IReadOnlyList<MountEntry> mounts, string parent, string mode)
    {
        var hierarchies = new List<Hierarchy>();
        foreach (var m in mounts)
        {
            if (m.FsType == "cgroup")
            {
                hierarchies.Add(new Hierarchy(m.MountPoint, ControllersOf(m)));
            }
            else if (m.FsType == "cgroup2")
            {
                hierarchies.Add(new Hierarchy(m.MountPoint, new HashSet<string>()));
            }
        }
        return new LegacyCgroups(hierarchies.DistinctBy(h => h.MountPoint).ToList(), parent, mode);
    }

    /// <summary>The controllers a v1 mount carries, from its super options (<c>rw,cpu</c>, <c>rw,name=systemd</c>).</summary>
    internal static IReadOnlySet<string> ControllersOf(MountEntry m) => m.SuperOptions.Split(',')
        .Where(o => o is not ("rw" or "ro") && !o.StartsWith("release_agent=", StringComparison.Ordinal) && !o.StartsWith("clone_children", StringComparison.Ordinal)
            && o is not ("noprefix" or "xattr" or "cpuset_v2_mode") && !o.StartsWith("favordynmods", StringComparison.Ordinal))
        .ToHashSet(StringComparer.Ordinal);

    /// <summary>The cgroupsPath runc gets for a sandbox: absolute, so relative to each hierarchy's root.</summary>
    public string OciPath(string sandboxId) => $"/{Parent}/{sandboxId}";

    /// <summary>The sandbox's directory in every hierarchy (whether or not it exists).</summary>
    public IEnumerable<string> Directories(string sandboxId) =>
        _hierarchies.Select(h => Path.Combine(h.MountPoint, Parent, sandboxId));

    /// <summary>
    /// Removes the parent cgroup from every hierarchy where it is empty (no sandbox cgroup left under it), so a daemon
    /// that stops with no sandboxes leaves nothing behind. A parent that still has sandboxes stays (rmdir fails, EBUSY).
    /// </summary>
    public void RemoveParentIfEmpty()
    {
        foreach (var h in _hierarchies)
        {
            Cgroups.RemoveIfNoChildren(Path.Combine(h.MountPoint, Parent));
        }
    }

    /// <summary>The sandbox's directory in the hierarchy that carries <paramref name="controller"/>, or null.</summary>
    public string? Directory(string sandboxId, string controller) =>
        _hierarchies.FirstOrDefault(h => h.Controllers.Contains(controller)) is { } h ? Path.Combine(h.MountPoint, Parent, sandboxId) : null;

    /// <summary>Ids of the sandbox cgroups that exist under <see cref="Parent"/> in any hierarchy.</summary>
    public IEnumerable<string> ExistingSandboxIds()
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var h in _hierarchies)
        {
            var parent = Path.Combine(h.MountPoint, Parent);
            if (System.IO.Directory.Exists(parent))
            {
                foreach (var dir in System.IO.Directory.EnumerateDirectories(parent))
                {
                    ids.Add(Path.GetFileName(dir));
                }
            }
        }
        return ids;
    }

    /// <summary>Whether the memory hierarchy has swap accounting (memory.memsw.*), which runc needs to set a swap limit.</summary>
    public bool HasSwapAccounting =>
        _hierarchies.FirstOrDefault(h => h.Controllers.Contains("memory")) is { } h && File.Exists(Path.Combine(h.MountPoint, "memory.memsw.limit_in_bytes"));

    /// <summary>
    /// Removes the sandbox's cgroup directories. A cgroup with processes cannot be removed (EBUSY), so processes
    /// still in it are killed first; they can only be the sandbox's own, since nothing else is ever put there.
    /// The pids hierarchy also has the sandbox's <see cref="PidReserve.WorkCgroup"/> child.
    /// </summary>
    public async Task RemoveAsync(string sandboxId, CancellationToken cancellationToken)
    {
        foreach (var dir in Directories(sandboxId))
        {
            await Cgroups.RemoveTreeAsync(sandboxId, dir, depth: 0, KillIn, cancellationToken);
        }
    }

    private static void KillIn(string dir)
    {
        foreach (var pid in Cgroups.Pids(dir))
        {
            Signals.Send(pid, Signals.SIGKILL);
        }
    }

    public bool SetCpuWeight(string sandboxId, bool background) =>
        SetCpuShares(sandboxId, background ? Cgroups.BackgroundCpuShares : Cgroups.NormalCpuShares);

    /// <summary>
    /// Writes the sandbox's cpu.shares, creating its cpu cgroup first when it does not exist yet: runc joins an
    /// existing cgroup and leaves a value its config does not name, so a sandbox whose cgroup is made here before
    /// <c>runc run</c> starts with these shares. False when the host has no cpu hierarchy.
    /// </summary>
    public bool SetCpuShares(string sandboxId, long shares)
    {
        if (Directory(sandboxId, "cpu") is not { } dir)
        {
            return false;
        }
        System.IO.Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "cpu.shares"), shares.ToString(CultureInfo.InvariantCulture));
        return true;
    }

    /// <summary>The sandbox's <c>freezer.state</c> (cgroup v1 freezer), or null when the host has no freezer hierarchy.</summary>
    public string? FreezerStateFile(string sandboxId) =>
        Directory(sandboxId, "freezer") is { } dir ? Path.Combine(dir, "freezer.state") : null;

    /// <summary>The sandbox's freezer state now (THAWED, FREEZING or FROZEN), or null when its freezer cgroup is gone.</summary>
    public string? FreezerState(string sandboxId)
    {
        try
        {
            return FreezerStateFile(sandboxId) is { } file ? File.ReadAllText(file).Trim() : null;
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    public bool? IsFrozen(string sandboxId) => FreezerState(sandboxId) is { } state ? state == "FROZEN" : null;

    /// <summary>
    /// Freezes every task of the sandbox (writes FROZEN) and waits, bounded, until the kernel says all of them are:
    /// a task in an uninterruptible sleep (disk I/O, a page fault under memory pressure) keeps the cgroup FREEZING
    /// until it returns to user space. If it is still not FROZEN after about 100 ms it is thawed again and the answer
    /// is false. False as well when the sandbox has no freezer cgroup (gone).
    /// </summary>
    public async Task<bool> FreezeAsync(string sandboxId, CancellationToken cancellationToken)
    {
        if (FreezerStateFile(sandboxId) is not { } file || !File.Exists(file))
        {
            return false;
        }
        try
        {
            File.WriteAllText(file, "FROZEN");
            // An idle agent is in epoll_wait or a futex (interruptible sleeps), so the write usually returns with the
            // cgroup FROZEN already; 1, 2, 4, 8, then 10 ms steps, 15 reads, bound the wait to ~100 ms.
            var delay = 1;
            for (var attempt = 0; attempt < 15; attempt++)
            {
                if (File.ReadAllText(file).Trim() == "FROZEN")
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

    /// <summary>Thaws every task of the sandbox (writes THAWED); a no-op when it is not frozen or its freezer cgroup is gone.</summary>
    public void Thaw(string sandboxId)
    {
        if (FreezerStateFile(sandboxId) is not { } file)
        {
            return;
        }
        try
        {
            File.WriteAllText(file, "THAWED");
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            // gone: nothing of it is frozen
        }
    }

    /// <summary>
    /// The pids of every process of the sandbox: those in its cgroup and its child cgroups in one hierarchy (every
    /// process of a sandbox is in every hierarchy; the pids one also has <see cref="PidReserve.WorkCgroup"/>).
    /// </summary>
    public IReadOnlyList<int> ProcessesOf(string sandboxId)
    {
        var root = Directory(sandboxId, "pids") ?? Directories(sandboxId).FirstOrDefault();
        return root is null ? [] : Cgroups.PidsBelow(root);
    }

    /// <summary>
    /// SIGKILLs the processes in the sandbox's cgroups until none is left, thawing them after each round (a frozen
    /// task does not die of SIGKILL on the v1 freezer until it is thawed; thawed after the kill, it never runs another
    /// instruction of its own). Throws <see cref="IOException"/> when some are still there after about 2 s.
    /// </summary>
    public async Task KillAllAsync(string sandboxId, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 400; attempt++)
        {
            var pids = ProcessesOf(sandboxId);
            if (pids.Count == 0)
            {
                return;
            }
            foreach (var pid in pids)
            {
                Signals.Send(pid, Signals.SIGKILL);
            }
            Thaw(sandboxId);
            // 400 x 5 ms bounds the wait for the exits to 2 s (longer under load: Task.Delay only waits at least that).
            await Task.Delay(5, cancellationToken);
        }
        throw new IOException($"processes of sandbox '{sandboxId}' were still running 2 s after SIGKILL: {string.Join(", ", ProcessesOf(sandboxId))}");
    }

    /// <summary>A sample of the sandbox's counters, or null when its cgroups are gone.</summary>
    public CgroupSample? Sample(string sandboxId)
    {
        try
        {
            var cpuacct = Directory(sandboxId, "cpuacct");
            var memory = Directory(sandboxId, "memory");
            var cpu = Directory(sandboxId, "cpu");
            if (cpuacct is null || memory is null || cpu is null || !System.IO.Directory.Exists(memory))
            {
                return null;
            }
            var stat = Cgroups.ReadKeyValues(Path.Combine(memory, "memory.stat"));
            var quota = Cgroups.ReadLong(Path.Combine(cpu, "cpu.cfs_quota_us"));
            var period = Cgroups.ReadLong(Path.Combine(cpu, "cpu.cfs_period_us"));
            return new CgroupSample(
                Timestamp: DateTimeOffset.UtcNow,
                CpuUsageNanoseconds: Cgroups.ReadLong(Path.Combine(cpuacct, "cpuacct.usage")),
                CpuQuotaCores: quota > 0 && period > 0 ? (double)quota / period : Environment.ProcessorCount,
                MemoryUsageBytes: Cgroups.ReadLong(Path.Combine(memory, "memory.usage_in_bytes")),
                MemoryInactiveFileBytes: stat.GetValueOrDefault("total_inactive_file"),
                MemoryLimitBytes: Cgroups.ReadLong(Path.Combine(memory, "memory.limit_in_bytes")));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
        {
            return null; // the sandbox went away between two reads
        }
    }

    public long? OomKills(string sandboxId)
    {
        // memory.oom_control has "oom_kill N" since Linux 4.13.
        try
        {
            return Directory(sandboxId, "memory") is { } dir
                && Cgroups.ReadKeyValues(Path.Combine(dir, "memory.oom_control")).TryGetValue("oom_kill", out var n) ? n : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public string? PidsDirectory(string sandboxId) =>
        Directory(sandboxId, "pids") is { } dir && System.IO.Directory.Exists(dir) ? dir : null;

    /// <summary>In v1 any cgroup can hold single threads of a process (the TID written to <c>tasks</c>).</summary>
    public void CreateThreadCgroup(string directory) => System.IO.Directory.CreateDirectory(directory);

    public void MoveThread(string directory, int tid) =>
        File.WriteAllText(Path.Combine(directory, "tasks"), tid.ToString(CultureInfo.InvariantCulture));
}
