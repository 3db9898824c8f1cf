using System.Globalization;

namespace Paddock.Bench.Daemon;

/// <summary>Reads of the host's memory accounting: /proc/PID/status, /proc/PID/smaps_rollup and cgroup v1's memory controller.</summary>
internal static class HostMemory
{
    public const string MemoryHierarchy = "/sys/fs/cgroup/memory";

    /// <summary>VmRSS of <paramref name="pid"/> in bytes.</summary>
    public static long ResidentBytes(int pid) => KiBField($"/proc/{pid}/status", "VmRSS:") * 1024;

    /// <summary>What the memory cgroup of one sandbox holds: usage_in_bytes and the rss/cache split of memory.stat.</summary>
    public readonly record struct SandboxMemory(long UsageBytes, long RssBytes, long CacheBytes, long PssBytes, int Processes);

    /// <summary>
    /// The memory of each sandbox cgroup under <paramref name="cgroupParent"/>: the cgroup's own counters, and the
    /// summed PSS (from smaps_rollup) of the processes in it, which shares the agent binary's pages fairly.
    /// </summary>
    public static IReadOnlyList<SandboxMemory> Sandboxes(string cgroupParent)
    {
        var parent = Path.Combine(MemoryHierarchy, cgroupParent);
        if (!Directory.Exists(parent))
        {
            throw new DirectoryNotFoundException($"no memory cgroup {parent}: the daemon's sandboxes are not where the bench expects them");
        }
        var result = new List<SandboxMemory>();
        foreach (var dir in Directory.EnumerateDirectories(parent))
        {
            var stat = Stat(Path.Combine(dir, "memory.stat"));
            long pss = 0;
            var pids = File.ReadAllLines(Path.Combine(dir, "cgroup.procs")).Where(l => l.Length > 0).ToList();
            foreach (var pid in pids)
            {
                try
                {
                    pss += KiBField($"/proc/{pid}/smaps_rollup", "Pss:") * 1024;
                }
                catch (IOException)
                {
                    // The process ended between the two reads.
                }
            }
            result.Add(new SandboxMemory(
                long.Parse(File.ReadAllText(Path.Combine(dir, "memory.usage_in_bytes")).Trim(), CultureInfo.InvariantCulture),
                stat.GetValueOrDefault("total_rss"),
                stat.GetValueOrDefault("total_cache"),
                pss,
                pids.Count));
        }
        return result;
    }

    /// <summary>Context switches (voluntary + involuntary: each is a wake-up or a preemption) and CPU time of some threads.</summary>
    public readonly record struct ThreadActivity(long ContextSwitches, long CpuNanoseconds);

    /// <summary>
    /// The <see cref="ThreadActivity"/> so far of every thread of the processes in the sandbox cgroups under
    /// <paramref name="cgroupParent"/>, by (pid, tid), from /proc/PID/task/TID/status and schedstat (CPU time in ns,
    /// unlike the 10 ms ticks of /proc/PID/stat).
    /// </summary>
    public static Dictionary<(int Pid, int Tid), ThreadActivity> SandboxThreads(string cgroupParent, Func<string, bool>? sandboxFilter = null)
    {
        var result = new Dictionary<(int, int), ThreadActivity>();
        foreach (var dir in Directory.EnumerateDirectories(Path.Combine(MemoryHierarchy, cgroupParent)))
        {
            if (sandboxFilter is not null && !sandboxFilter(Path.GetFileName(dir)))
            {
                continue;
            }
            foreach (var pid in File.ReadAllLines(Path.Combine(dir, "cgroup.procs")).Where(l => l.Length > 0).Select(l => int.Parse(l, CultureInfo.InvariantCulture)))
            {
                string[] tasks;
                try
                {
                    tasks = Directory.GetDirectories($"/proc/{pid}/task");
                }
                catch (DirectoryNotFoundException)
                {
                    continue; // the process ended
                }
                foreach (var task in tasks)
                {
                    try
                    {
                        long switches = 0;
                        foreach (var line in File.ReadLines(Path.Combine(task, "status")))
                        {
                            // voluntary_ctxt_switches and nonvoluntary_ctxt_switches
                            if (line.Contains("voluntary_ctxt_switches:", StringComparison.Ordinal))
                            {
                                switches += long.Parse(line.AsSpan(line.IndexOf(':') + 1).Trim(), CultureInfo.InvariantCulture);
                            }
                        }
                        var cpu = long.Parse(File.ReadAllText(Path.Combine(task, "schedstat")).Split(' ')[0], CultureInfo.InvariantCulture);
                        result[(pid, int.Parse(Path.GetFileName(task), CultureInfo.InvariantCulture))] = new ThreadActivity(switches, cpu);
                    }
                    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                    {
                        // The thread ended between the listing and the reads.
                    }
                }
            }
        }
        return result;
    }

    /// <summary>
    /// The activity between two <see cref="SandboxThreads"/> readings: of the threads in both, and all of those only
    /// in the second. Threads that ended in between are left out (what they did in the window is lost with them), and counted.
    /// </summary>
    public static (ThreadActivity Activity, int Ended) Between(Dictionary<(int Pid, int Tid), ThreadActivity> before, Dictionary<(int Pid, int Tid), ThreadActivity> after)
    {
        long switches = 0, cpu = 0;
        foreach (var (key, now) in after)
        {
            var then = before.GetValueOrDefault(key);
            switches += now.ContextSwitches - then.ContextSwitches;
            cpu += now.CpuNanoseconds - then.CpuNanoseconds;
        }
        return (new ThreadActivity(switches, cpu), before.Keys.Count(k => !after.ContainsKey(k)));
    }

    public const string FreezerHierarchy = "/sys/fs/cgroup/freezer";

    /// <summary>The sandboxes under <paramref name="cgroupParent"/> whose freezer.state reads FROZEN (paddockd's idle freezer).</summary>
    public static HashSet<string> FrozenSandboxes(string cgroupParent)
    {
        var frozen = new HashSet<string>(StringComparer.Ordinal);
        var parent = Path.Combine(FreezerHierarchy, cgroupParent);
        if (!Directory.Exists(parent))
        {
            return frozen;
        }
        foreach (var dir in Directory.EnumerateDirectories(parent))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(dir, "freezer.state")).Trim() == "FROZEN")
                {
                    frozen.Add(Path.GetFileName(dir));
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // removed meanwhile
            }
        }
        return frozen;
    }

    private static Dictionary<string, long> Stat(string path) =>
        File.ReadAllLines(path)
            .Select(l => l.Split(' '))
            .Where(p => p.Length == 2)
            .ToDictionary(p => p[0], p => long.Parse(p[1], CultureInfo.InvariantCulture));

    private static long KiBField(string path, string name)
    {
        foreach (var line in File.ReadLines(path))
        {
            if (line.StartsWith(name, StringComparison.Ordinal))
            {
                return long.Parse(line.AsSpan(name.Length).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
            }
        }
        throw new InvalidDataException($"{path} has no {name} line");
    }
}
