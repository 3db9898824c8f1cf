using System.Globalization;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>How the OCI runtime creates a container's cgroup (runc's and crun's <c>--systemd-cgroup</c>).</summary>
internal enum CgroupManager
{
    /// <summary>The runtime writes the cgroup filesystem itself; cgroupsPath is a path below the hierarchy's root.</summary>
    Cgroupfs,

    /// <summary>
    /// The runtime asks systemd for a transient scope; cgroupsPath is <c>slice:prefix:name</c> and the cgroup is
    /// <c>SLICE-PATH/prefix-name.scope</c>. What a systemd host that delegates a subtree to the daemon expects.
    /// </summary>
    Systemd,
}

/// <summary>Finds which cgroup layout the host has, and the file formats every layout shares.</summary>
internal static class Cgroups
{
    /// <summary>cpu.shares (v1) of a sandbox doing background work (the kernel's minimum).</summary>
    public const long BackgroundCpuShares = 2;

    /// <summary>cpu.shares (v1) of a sandbox in use: the kernel's default, which runc leaves when the config names none.</summary>
    public const long NormalCpuShares = 1024;

    /// <summary>cpu.weight (v2) of a sandbox doing background work (the kernel's minimum, cgroup-v2.rst "Weights").</summary>
    public const long BackgroundCpuWeight = 1;

    /// <summary>cpu.weight (v2) of a sandbox in use: the kernel's default.</summary>
    public const long NormalCpuWeight = 100;

    /// <summary>The prefix of a sandbox's scope unit under the systemd cgroup manager (<c>paddock-ID.scope</c>).</summary>
    public const string SystemdScopePrefix = "paddock";

    /// <summary>
    /// Picks the layout from the daemon's mount table (<paramref name="mounts"/>: /proc/self/mountinfo when null). A
    /// host that mounts any v1 hierarchy with a controller is v1 (hybrid when a cgroup2 is mounted beside it, as on
    /// these build machines, FACTS.md): runc and crun put every controller they find on v1 there, and so does the
    /// daemon. A host with only cgroup2 is unified. A host with neither gets the v1 driver with no hierarchy: every
    /// operation then finds no cgroup, as before this seam existed.
    /// </summary>
    public static ISandboxCgroups Detect(string parent, CgroupManager manager = CgroupManager.Cgroupfs, IReadOnlyList<MountEntry>? mounts = null)
    {
        mounts ??= MountTable.Read();
        var legacy = mounts.Where(m => m.FsType == "cgroup").ToList();
        var unified = mounts.Where(m => m.FsType == "cgroup2").ToList();
        var v1Controllers = legacy.Any(m => LegacyCgroups.ControllersOf(m).Any(c => !c.StartsWith("name=", StringComparison.Ordinal)));
        if (v1Controllers || unified.Count == 0)
        {
            if (manager == CgroupManager.Systemd)
            {
                throw new ArgumentException("the systemd cgroup manager is supported on a unified (cgroup v2 only) host; this host mounts cgroup v1 hierarchies, use the cgroupfs manager");
            }
            return LegacyCgroups.FromMounts(mounts, parent, unified.Count > 0 ? "hybrid" : "v1");
        }
        // /sys/fs/cgroup when it is the cgroup2 mount (every distribution's default), else the first one mounted.
        var root = unified.FirstOrDefault(m => m.MountPoint == "/sys/fs/cgroup") ?? unified[0];
        return new UnifiedCgroups(root.MountPoint, parent, manager);
    }

    /// <summary>
    /// The directory of a systemd slice unit below the hierarchy's root: systemd nests a slice under its prefixes
    /// (systemd.slice(5): <c>a-b-c.slice</c> is <c>a.slice/a-b.slice/a-b-c.slice</c>); <c>-.slice</c> is the root.
    /// </summary>
    public static string SystemdSlicePath(string slice)
    {
        if (!slice.EndsWith(".slice", StringComparison.Ordinal) || slice.Length == ".slice".Length)
        {
            throw new ArgumentException($"'{slice}' is not a systemd slice name (NAME.slice)", nameof(slice));
        }
        if (slice == "-.slice")
        {
            return "";
        }
        var name = slice[..^".slice".Length];
        if (name.StartsWith('-') || name.EndsWith('-') || name.Contains("--", StringComparison.Ordinal))
        {
            throw new ArgumentException($"'{slice}' is not a valid slice name: a dash may only separate two parts", nameof(slice));
        }
        var parts = name.Split('-');
        var path = new List<string>(parts.Length);
        for (var i = 1; i <= parts.Length; i++)
        {
            path.Add(string.Join('-', parts[..i]) + ".slice");
        }
        return string.Join('/', path);
    }

    /// <summary>The pids in a cgroup directory (cgroup.procs), empty when it is gone.</summary>
    public static IReadOnlyList<int> Pids(string directory) => Ids(Path.Combine(directory, "cgroup.procs"));

    /// <summary>
    /// The pids of a cgroup and its children, four levels down (a sandbox's own tree is two deep: the pid reserve's
    /// work child, or the processes the sandbox's runtime nests). A pid can show twice (threads of one process in two
    /// v2 cgroups, one of them threaded), hence Distinct.
    /// </summary>
    public static IReadOnlyList<int> PidsBelow(string root)
    {
        var pids = new List<int>();
        Walk(root, 0);
        return pids.Distinct().ToList();

        void Walk(string dir, int depth)
        {
            pids.AddRange(Pids(dir));
            if (depth >= 4)
            {
                return;
            }
            try
            {
                foreach (var child in Directory.EnumerateDirectories(dir))
                {
                    Walk(child, depth + 1);
                }
            }
            catch (DirectoryNotFoundException)
            {
                // removed meanwhile: no processes there
            }
        }
    }

    /// <summary>The ids, one a line, in a cgroup's cgroup.procs, cgroup.threads or tasks; empty when it is gone.</summary>
    internal static IReadOnlyList<int> Ids(string file)
    {
        try
        {
            return File.ReadAllLines(file)
                .Where(l => l.Length > 0)
                .Select(l => int.Parse(l, CultureInfo.InvariantCulture))
                .ToList();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            return [];
        }
    }

    internal static long ReadLong(string path) => long.Parse(File.ReadAllText(path).Trim(), CultureInfo.InvariantCulture);

    /// <summary>A flat keyed file (cgroup-v2.rst "Format": <c>KEY VALUE</c> a line; v1's memory.stat is the same).</summary>
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

    /// <summary>
    /// Removes a cgroup directory after its child cgroups (rmdir of a cgroup with children fails), killing what runs
    /// in each first with <paramref name="kill"/>. Only the daemon and the OCI runtime create cgroups under a sandbox's
    /// (the sandbox sees /sys/fs/cgroup read-only), so the depth is bounded. A cgroup with processes cannot be removed
    /// (EBUSY) until they have exited: 100 x 20 ms bounds that wait to 2 s.
    /// </summary>
    internal static async Task RemoveTreeAsync(string sandboxId, string dir, int depth, Action<string> kill, CancellationToken cancellationToken)
    {
        if (!Directory.Exists(dir))
        {
            return;
        }
        if (depth < 4)
        {
            List<string> children;
            try
            {
                children = Directory.EnumerateDirectories(dir).ToList();
            }
            catch (DirectoryNotFoundException)
            {
                return; // the runtime's delete removed it meanwhile
            }
            foreach (var child in children)
            {
                await RemoveTreeAsync(sandboxId, child, depth + 1, kill, cancellationToken);
            }
        }
        for (var attempt = 0; ; attempt++)
        {
            kill(dir);
            try
            {
                // rmdir(2) of a cgroup directory: its control files are not real files and go with it.
                Directory.Delete(dir);
                break;
            }
            catch (DirectoryNotFoundException)
            {
                break;
            }
            catch (IOException) when (attempt < 100)
            {
                await Task.Delay(20, cancellationToken);
            }
            catch (IOException ex)
            {
                throw new IOException($"cgroup {dir} of sandbox '{sandboxId}' could not be removed: {ex.Message}", ex);
            }
        }
    }

    /// <summary>Removes <paramref name="directory"/> when it has no child cgroup left; a race with a new one is harmless.</summary>
    internal static void RemoveIfNoChildren(string directory)
    {
        try
        {
            if (Directory.Exists(directory) && !Directory.EnumerateDirectories(directory).Any())
            {
                Directory.Delete(directory);
            }
        }
        catch (IOException)
        {
            // A sandbox cgroup appeared meanwhile, or the hierarchy went away: the parent stays, which is harmless.
        }
    }
}

/// <summary>Raw cgroup counters of one sandbox at one moment, whichever layout they were read from.</summary>
internal sealed record CgroupSample(
    DateTimeOffset Timestamp,
    long CpuUsageNanoseconds,
    double CpuQuotaCores,
    long MemoryUsageBytes,
    long MemoryInactiveFileBytes,
    long MemoryLimitBytes)
{
    /// <summary>Memory in use as <c>docker stats</c> counts it on either version: usage less inactive page cache.</summary>
    public long MemoryWorkingSetBytes => Math.Max(0, MemoryUsageBytes - MemoryInactiveFileBytes);
}
