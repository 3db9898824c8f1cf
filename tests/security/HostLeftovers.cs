using System.Globalization;
using System.Diagnostics;

namespace Paddock.Security.Tests;

/// <summary>
/// What a daemon's sandboxes hold on the host, found from the host alone (mount table, files, cgroups), and the
/// removal of whatever a test run left behind, so that a failed test does not leave sandboxes running. Both tiers:
/// the runc tier's under STATE (sandboxes/, netns/, the cgroup parent, links "pd" + hash), the gVisor tier's under
/// STATE/gvisor/shared (sandboxes/, netns/, <see cref="GvisorCgroupParent"/>, links "pgv" + hash).
/// </summary>
internal sealed record HostLeftovers(int Mounts, int NetnsFiles, int SandboxDirectories, int Cgroups, int Processes, int NetLinks)
{
    public static HostLeftovers Take(string stateDir, string cgroupParent)
    {
        // The disks the runtime makes ahead (Runc:DiskStock, STATE/disk-stock) are the daemon's, not a sandbox's, and
        // come and go in the background while it runs; a stopped daemon removes them.
        var stock = Path.Combine(stateDir, "disk-stock") + "/";
        var gvisor = Path.Combine(stateDir, "gvisor");
        var gvisorShared = Path.Combine(gvisor, "shared");
        var gvisorStock = Path.Combine(gvisorShared, "disk-stock") + "/";
        // The gVisor tier's own mounts (its state bind, the shared mount, its mount namespace) live as long as the
        // daemon has used the tier, whatever sandboxes run.
        string[] gvisorOwn = [gvisor, gvisorShared, Path.Combine(gvisor, "mntns")];
        var mounts = MountPointsUnder(stateDir).Count(m => !m.StartsWith(stock, StringComparison.Ordinal)
            && !m.StartsWith(gvisorStock, StringComparison.Ordinal) && !gvisorOwn.Contains(m, StringComparer.Ordinal));
        var cgroups = 0;
        var processes = 0;
        foreach (var dir in CgroupDirectories(cgroupParent))
        {
            cgroups++;
            processes += Pids(dir).Count;
        }
        return new HostLeftovers(
            mounts,
            Count(Path.Combine(stateDir, "netns"), dirs: false) + Count(Path.Combine(gvisorShared, "netns"), dirs: false),
            Count(Path.Combine(stateDir, "sandboxes"), dirs: true) + Count(Path.Combine(gvisorShared, "sandboxes"), dirs: true),
            cgroups,
            processes,
            NetLinksOf(stateDir).Count);
    }

    /// <summary>The gVisor tier's cgroup parent of a test daemon whose runc tier uses <paramref name="cgroupParent"/>.</summary>
    public static string GvisorCgroupParent(string cgroupParent) => cgroupParent + "-gvisor";

    public static readonly HostLeftovers None = new(0, 0, 0, 0, 0, 0);

    /// <summary>
    /// <see cref="Take"/> until nothing is left or <paramref name="within"/> has passed (the last reading then): a kill
    /// answers once the sandbox's processes are gone, and its mounts, netns, directory, cgroups and link are removed
    /// in the background right after.
    /// </summary>
    public static async Task<HostLeftovers> SettledAsync(string stateDir, string cgroupParent, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            var left = Take(stateDir, cgroupParent);
            if (left == None || DateTime.UtcNow >= deadline)
            {
                return left;
            }
            await Task.Delay(100);
        }
    }

    /// <summary>
    /// The host ends of the veth pairs of <paramref name="stateDir"/>'s sandboxes. A daemon over a state directory
    /// other than the default names them "pd" + the first 3 bytes of SHA-256 of the directory's full path, in hex
    /// (RuntimeServiceCollectionExtensions.ReadNetworkOptions); each link also has its rules in the daemon's nftables
    /// table, which the daemon removes with the link.
    /// </summary>
    public static List<string> NetLinksOf(string stateDir)
    {
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(stateDir))));
        // The gVisor tier's: "pgv" + the first 5 hex digits (RuntimeServiceCollectionExtensions.ReadGvisorOptions).
        string[] prefixes = ["pd" + hash[..6], "pgv" + hash[..5]];
        return Directory.Exists("/sys/class/net")
            ? Directory.EnumerateFileSystemEntries("/sys/class/net").Select(Path.GetFileName).OfType<string>().Where(n => prefixes.Any(p => n.StartsWith(p, StringComparison.Ordinal))).ToList()
            : [];
    }

    /// <summary>Kills and removes everything of <paramref name="stateDir"/>'s sandboxes that is still there (bounded).</summary>
    public static async Task RemoveAsync(string stateDir, string cgroupParent)
    {
        var runcRoot = Path.Combine(stateDir, "runc");
        if (Directory.Exists(runcRoot))
        {
            foreach (var id in Directory.EnumerateDirectories(runcRoot).Select(Path.GetFileName).OfType<string>())
            {
                await RunAsync("runc", ["--root", runcRoot, "delete", "--force", id]);
            }
        }
        foreach (var dir in CgroupDirectories(cgroupParent).ToList())
        {
            foreach (var pid in Pids(dir))
            {
                try
                {
                    Process.GetProcessById(pid).Kill();
                }
                catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
                {
                    // gone already
                }
            }
        }
        foreach (var mountPoint in MountPointsUnder(stateDir).OrderByDescending(m => m.Length))
        {
            await RunAsync("umount", ["-l", mountPoint]);
        }
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var left = CgroupDirectories(cgroupParent).ToList();
            foreach (var dir in left)
            {
                try
                {
                    Directory.Delete(dir);
                }
                catch (IOException)
                {
                    // busy until its killed processes are reaped: retried
                }
            }
            if (left.Count == 0)
            {
                break;
            }
            await Task.Delay(100);
        }
        foreach (var parent in CgroupRoots().SelectMany(r => (string[])[Path.Combine(r, cgroupParent), Path.Combine(r, GvisorCgroupParent(cgroupParent))]).Where(Directory.Exists))
        {
            try
            {
                Directory.Delete(parent);
            }
            catch (IOException)
            {
                // not empty: reported by the tests that count leftovers
            }
        }
        foreach (var link in NetLinksOf(stateDir))
        {
            await RunAsync("ip", ["link", "del", link]);
        }
        if (MountPointsUnder(stateDir).Count == 0 && Directory.Exists(stateDir))
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    public static List<string> MountPointsUnder(string dir) =>
        File.ReadLines("/proc/self/mountinfo")
            .Select(l => Unescape(l.Split(' ')[4]))
            .Where(m => m.StartsWith(dir + "/", StringComparison.Ordinal))
            .ToList();

    public static IEnumerable<string> CgroupRoots() =>
        File.ReadLines("/proc/self/mountinfo")
            .Select(l => l.Split(' '))
            .Where(f => f.SkipWhile(x => x != "-").Skip(1).FirstOrDefault() is "cgroup" or "cgroup2")
            .Select(f => Unescape(f[4]))
            .Distinct(StringComparer.Ordinal);

    /// <summary>Every sandbox cgroup under the parent (and its gVisor tier's), in every hierarchy.</summary>
    public static IEnumerable<string> CgroupDirectories(string cgroupParent) =>
        CgroupRoots().SelectMany(r => (string[])[Path.Combine(r, cgroupParent), Path.Combine(r, GvisorCgroupParent(cgroupParent))])
            .Where(Directory.Exists).SelectMany(Directory.EnumerateDirectories).ToList();

    /// <summary>The cgroup directory of one sandbox (of either tier) in the hierarchy of <paramref name="controller"/>.</summary>
    public static string? SandboxCgroup(string cgroupParent, string sandboxId, string controller) =>
        CgroupRoots().Where(r => Path.GetFileName(r).Split(',').Contains(controller))
            .SelectMany(r => (string[])[Path.Combine(r, cgroupParent, sandboxId), Path.Combine(r, GvisorCgroupParent(cgroupParent), sandboxId)])
            .FirstOrDefault(Directory.Exists);

    public static List<int> Pids(string cgroupDir)
    {
        try
        {
            return File.ReadAllLines(Path.Combine(cgroupDir, "cgroup.procs")).Where(l => l.Length > 0)
                .Select(l => int.Parse(l, CultureInfo.InvariantCulture)).ToList();
        }
        catch (IOException)
        {
            return [];
        }
    }

    private static int Count(string dir, bool dirs) =>
        !Directory.Exists(dir) ? 0 : (dirs ? Directory.EnumerateDirectories(dir) : Directory.EnumerateFiles(dir)).Count();

    // mountinfo escapes space, tab, newline and backslash as \ooo.
    private static string Unescape(string s) =>
        s.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal)
         .Replace("\\012", "\n", StringComparison.Ordinal).Replace("\\134", "\\", StringComparison.Ordinal);

    private static async Task RunAsync(string file, string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
    }
}
