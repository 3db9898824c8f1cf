using System.Globalization;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// The host's cgroup hierarchies as runc's cgroupfs driver uses them for a container with an absolute
/// cgroupsPath: one directory per mounted hierarchy. On this host (FACTS.md) that is the v1 hierarchies (cpu,
/// cpuacct, cpuset, memory, devices, freezer, blkio, pids and name=systemd, each mounted on its own) plus the
/// near-empty cgroup2 at /sys/fs/cgroup/unified, which runc 1.1 also joins in hybrid mode.
/// </summary>
internal sealed class Cgroups
{
    private readonly IReadOnlyList<Hierarchy> _hierarchies;

    private Cgroups(IReadOnlyList<Hierarchy> hierarchies, string parent)
    {
        _hierarchies = hierarchies;
        Parent = parent.Trim('/');
    }

    /// <summary>One mounted hierarchy: its mount point and the v1 controllers it carries (none for cgroup2).</summary>
    private sealed record Hierarchy(string MountPoint, IReadOnlySet<string> Controllers);

    /// <summary>The cgroup under which every sandbox's cgroup is created, relative to each hierarchy's root.</summary>
    public string Parent { get; }

    /// <summary>Finds the mounted hierarchies in the daemon's mount table.</summary>
    public static Cgroups Discover(string parent)
    {
        var hierarchies = new List<Hierarchy>();
        foreach (var m in MountTable.Read())
        {
            if (m.FsType == "cgroup")
            {
                var controllers = m.SuperOptions.Split(',')
                    .Where(o => o is not ("rw" or "ro") && !o.StartsWith("release_agent=", StringComparison.Ordinal) && !o.StartsWith("clone_children", StringComparison.Ordinal))
                    .ToHashSet(StringComparer.Ordinal);
                hierarchies.Add(new Hierarchy(m.MountPoint, controllers));
            }
            else if (m.FsType == "cgroup2")
            {
                hierarchies.Add(new Hierarchy(m.MountPoint, new HashSet<string>()));
            }
        }
        return new Cgroups(hierarchies.DistinctBy(h => h.MountPoint).ToList(), parent);
    }

    /// <summary>The cgroupsPath runc gets for a sandbox: absolute, so relative to each hierarchy's root.</summary>
    public string RuncPath(string sandboxId) => $"/{Parent}/{sandboxId}";

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
            var directory = Path.Combine(h.MountPoint, Parent);
            try
            {
                if (System.IO.Directory.Exists(directory) && !System.IO.Directory.EnumerateDirectories(directory).Any())
                {
                    System.IO.Directory.Delete(directory);
                }
            }
            catch (IOException)
            {
                // A sandbox cgroup appeared meanwhile, or the hierarchy went away: the parent stays, which is harmless.
            }
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
    /// Throws <see cref="IOException"/> when a directory is still there after a bounded wait.
    /// </summary>
    public async Task RemoveAsync(string sandboxId, CancellationToken cancellationToken)
    {
        foreach (var dir in Directories(sandboxId))
        {
            await RemoveTreeAsync(sandboxId, dir, depth: 0, cancellationToken);
        }
    }

    /// <summary>
    /// Removes a cgroup directory after its child cgroups (rmdir of a cgroup with children fails): the sandbox's own
    /// has one, <see cref="PidReserve.WorkCgroup"/> in the pids hierarchy. Only the daemon creates cgroups there (the
    /// sandbox sees /sys/fs/cgroup read-only), so the depth is bounded.
    /// </summary>
    private static async Task RemoveTreeAsync(string sandboxId, string dir, int depth, CancellationToken cancellationToken)
    {
        if (!System.IO.Directory.Exists(dir))
        {
            return;
        }
        if (depth < 4)
        {
            List<string> children;
            try
            {
                children = System.IO.Directory.EnumerateDirectories(dir).ToList();
            }
            catch (DirectoryNotFoundException)
            {
                return; // runc delete removed it meanwhile
            }
            foreach (var child in children)
            {
                await RemoveTreeAsync(sandboxId, child, depth + 1, cancellationToken);
            }
        }
        for (var attempt = 0; ; attempt++)
        {
            foreach (var pid in Pids(dir))
            {
                Signals.Send(pid, Signals.SIGKILL);
            }
            try
            {
                // rmdir(2) of a cgroup directory: its control files are not real files and go with it.
                System.IO.Directory.Delete(dir);
                break;
            }
            catch (DirectoryNotFoundException)
            {
                break;
            }
            catch (IOException) when (attempt < 100)
            {
                // EBUSY while killed processes are still exiting: 100 x 20 ms bounds the wait to 2 s.
                await Task.Delay(20, cancellationToken);
            }
            catch (IOException ex)
            {
                throw new IOException($"cgroup {dir} of sandbox '{sandboxId}' could not be removed: {ex.Message}", ex);
            }
        }
    }

    /// <summary>cpu.shares of a sandbox doing background work (the kernel's minimum): it runs when nothing else wants the CPU.</summary>
    public const long BackgroundCpuShares = 2;

    /// <summary>cpu.shares of a sandbox in use: the kernel's default, which runc leaves when the config names none.</summary>
    public const long NormalCpuShares = 1024;

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

    /// <summary>
    /// Freezes every task of the sandbox (writes FROZEN) and waits, bounded, until the kernel says all of them are:
    /// a task in an uninterruptible sleep (disk I/O, a page fault under memory pressure) keeps the cgroup FREEZING
    /// until it returns to user space. If it is still not FROZEN after about 100 ms it is thawed again and the answer
    /// is false. False as well when the sandbox has no freezer cgroup (gone).
    /// </summary>
    public async Task<bool> FreezeAsync(string sandboxId)
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
                await Task.Delay(delay);
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
        var pids = new List<int>();
        if (root is not null)
        {
            Collect(root, depth: 0);
        }
        return pids;

        void Collect(string dir, int depth)
        {
            pids.AddRange(Pids(dir));
            if (depth >= 4)
            {
                return;
            }
            try
            {
                foreach (var child in System.IO.Directory.EnumerateDirectories(dir))
                {
                    Collect(child, depth + 1);
                }
            }
            catch (DirectoryNotFoundException)
            {
                // removed meanwhile: no processes there
            }
        }
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

    /// <summary>The pids in a cgroup directory (cgroup.procs), empty when it is gone.</summary>
    public static IReadOnlyList<int> Pids(string directory)
    {
        try
        {
            return File.ReadAllLines(Path.Combine(directory, "cgroup.procs"))
                .Select(l => int.Parse(l, CultureInfo.InvariantCulture))
                .ToList();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return [];
        }
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
            var stat = ReadKeyValues(Path.Combine(memory, "memory.stat"));
            var quota = ReadLong(Path.Combine(cpu, "cpu.cfs_quota_us"));
            var period = ReadLong(Path.Combine(cpu, "cpu.cfs_period_us"));
            return new CgroupSample(
                Timestamp: DateTimeOffset.UtcNow,
                CpuUsageNanoseconds: ReadLong(Path.Combine(cpuacct, "cpuacct.usage")),
                CpuQuotaCores: quota > 0 && period > 0 ? (double)quota / period : Environment.ProcessorCount,
                MemoryUsageBytes: ReadLong(Path.Combine(memory, "memory.usage_in_bytes")),
                MemoryInactiveFileBytes: stat.GetValueOrDefault("total_inactive_file"),
                MemoryLimitBytes: ReadLong(Path.Combine(memory, "memory.limit_in_bytes")));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
        {
            return null; // the sandbox went away between two reads
        }
    }

    internal static long ReadLong(string path) => long.Parse(File.ReadAllText(path).Trim(), CultureInfo.InvariantCulture);

    internal static Dictionary<string, long> ReadKeyValues(string path)
    {
        var values = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var line in File.ReadAllLines(path))
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            if (space > 0 && long.TryParse(line.AsSpan(space + 1), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v))
            {
                values[line[..space]] = v;
            }
        }
        return values;
    }
}

/// <summary>Raw cgroup v1 counters of one sandbox at one moment.</summary>
internal sealed record CgroupSample(
    DateTimeOffset Timestamp,
    long CpuUsageNanoseconds,
    double CpuQuotaCores,
    long MemoryUsageBytes,
    long MemoryInactiveFileBytes,
    long MemoryLimitBytes)
{
    /// <summary>Memory in use as <c>docker stats</c> counts it on cgroup v1: usage less inactive page cache.</summary>
    public long MemoryWorkingSetBytes => Math.Max(0, MemoryUsageBytes - MemoryInactiveFileBytes);
}
