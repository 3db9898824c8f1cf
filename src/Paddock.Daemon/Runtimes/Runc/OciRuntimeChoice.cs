using Microsoft.Extensions.Logging;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Runtimes.Runc;

/// <summary>Which OCI runtime the runc tier drives (<c>Runc:Runtime</c>).</summary>
internal enum OciRuntimeKind
{
    /// <summary>crun where it runs without changing the host, else runc.</summary>
    Auto,

    /// <summary>runc (Go; Debian's 1.1.5 here).</summary>
    Runc,

    /// <summary>crun (C; Debian 12's 1.8.1), with the hybrid-mode hugetlb rebinding where the host needs it.</summary>
    Crun,
}

/// <summary>The runtime chosen, the executable to run, and why (logged at start).</summary>
internal sealed record OciRuntimeSelection(string Name, string Binary, string Reason);

/// <summary>
/// Picks runc or crun. Both read the same config.json and take the same commands and flags (run --detach
/// --no-new-keyring, delete --force, pause, resume, list --format json). crun runs Paddock's own config at about half
/// of runc's CPU (22 vs 44 ms, 0.77x its wall time: FACTS.md, 20 paired runs), so <see cref="OciRuntimeKind.Auto"/>
/// prefers it, but only where it runs as the host is.
/// </summary>
/// <remarks>
/// crun 1.8 refuses a hybrid host whose cgroup2 still holds a controller ("cgroups in hybrid mode not supported, drop
/// all controllers from cgroupv2"); these build machines' cgroup2 holds <c>hugetlb</c>. Mounting a v1 hierarchy with
/// <c>hugetlb</c> moves that controller out of cgroup2, for the whole host, for as long as that hierarchy exists. The
/// daemon does that only on an explicit <c>Runc:Runtime=crun</c>, only when hugetlb is the one controller left there
/// and no cgroup2 cgroup uses it (the root's cgroup.subtree_control does not enable it; otherwise the kernel refuses
/// the mount, EBUSY), at <see cref="HugetlbMountPoint"/>, and leaves it mounted when it stops.
/// </remarks>
internal static partial class OciRuntimeChoice
{
    /// <summary>Where the daemon mounts the v1 hugetlb hierarchy for crun on a hybrid host.</summary>
    public const string HugetlbMountPoint = "/run/paddock/cgroup-hugetlb";

    public static OciRuntimeSelection Choose(RuncOptions options, ILogger logger, IReadOnlyList<MountEntry>? mounts = null, Func<string, string?>? findInPath = null)
    {
        findInPath ??= FindInPath;
        if (options.RuncBinary != new RuncOptions().RuncBinary)
        {
            return new OciRuntimeSelection(Path.GetFileName(options.RuncBinary), options.RuncBinary, "Runc:RuncBinary names it");
        }
        mounts ??= MountTable.Read();
        var crun = findInPath("crun");
        var blocker = HybridBlocker(mounts);
        switch (options.Runtime)
        {
            case OciRuntimeKind.Runc:
                return new OciRuntimeSelection("runc", "runc", "Runc:Runtime=runc");
            case OciRuntimeKind.Crun:
                if (crun is null)
                {
                    throw new ArgumentException("Runc:Runtime=crun, but no crun in PATH: install it (apt-get install crun) or choose runc");
                }
                if (blocker is { } b)
                {
                    if (b.Controllers.SetEquals(["hugetlb"]) && !b.HugetlbInUse)
                    {
                        BindHugetlbToV1(logger);
                    }
                    else
                    {
                        throw new ArgumentException($"Runc:Runtime=crun, but crun cannot run on this hybrid host: its cgroup2 at {b.MountPoint} holds {string.Join(", ", b.Controllers)}{(b.HugetlbInUse ? " (hugetlb enabled for its cgroups)" : "")}; choose runc");
                    }
                }
                return new OciRuntimeSelection("crun", crun, blocker is null ? "Runc:Runtime=crun" : $"Runc:Runtime=crun; hugetlb bound to a v1 hierarchy at {HugetlbMountPoint}");
            default:
                if (crun is null)
                {
                    return new OciRuntimeSelection("runc", "runc", "auto: no crun in PATH");
                }
                return blocker is { } hybrid
                    ? new OciRuntimeSelection("runc", "runc", $"auto: crun refuses this hybrid host while its cgroup2 holds {string.Join(", ", hybrid.Controllers)} (Runc:Runtime=crun rebinds hugetlb)")
                    : new OciRuntimeSelection("crun", crun, "auto: crun found, and the host's cgroups suit it");
        }
    }

    /// <summary>A hybrid host's cgroup2 that still holds controllers (what crun refuses), or null.</summary>
    internal sealed record Blocker(string MountPoint, IReadOnlySet<string> Controllers, bool HugetlbInUse);

    internal static Blocker? HybridBlocker(IReadOnlyList<MountEntry> mounts)
    {
        var hybrid = mounts.Any(m => m.FsType == "cgroup" && LegacyCgroups.ControllersOf(m).Any(c => !c.StartsWith("name=", StringComparison.Ordinal)));
        var unified = mounts.FirstOrDefault(m => m.FsType == "cgroup2");
        if (!hybrid || unified is null)
        {
            return null;
        }
        var controllers = Words(Path.Combine(unified.MountPoint, "cgroup.controllers"));
        return controllers.Count == 0
            ? null
            : new Blocker(unified.MountPoint, controllers, Words(Path.Combine(unified.MountPoint, "cgroup.subtree_control")).Contains("hugetlb"));
    }

    private static HashSet<string> Words(string file)
    {
        try
        {
            return File.ReadAllText(file).Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        }
        catch (IOException)
        {
            return [];
        }
    }

    private static void BindHugetlbToV1(ILogger logger)
    {
        Directory.CreateDirectory(HugetlbMountPoint);
        if (MountTable.IsMountPoint(HugetlbMountPoint))
        {
            return;
        }
        var errno = Mounts.Mount("cgroup", HugetlbMountPoint, "cgroup", Mounts.MS_NOSUID | Mounts.MS_NODEV | 0x8 /* MS_NOEXEC */, "hugetlb");
        if (errno != 0)
        {
            throw new IOException($"could not mount a v1 hugetlb hierarchy at {HugetlbMountPoint} for crun: {Errno.Describe(errno)}");
        }
        HugetlbRebound(logger, HugetlbMountPoint);
    }

    private static string? FindInPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name))
            .FirstOrDefault(File.Exists);

    [LoggerMessage(3014, LogLevel.Warning, "crun on a hybrid host: bound the hugetlb controller to a v1 hierarchy at {MountPoint} (it leaves cgroup2 for the whole host while that stays mounted)")]
    private static partial void HugetlbRebound(ILogger logger, string mountPoint);
}
