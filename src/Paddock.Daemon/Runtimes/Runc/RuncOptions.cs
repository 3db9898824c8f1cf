using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Runtimes.Runc;

/// <summary>Settings of the runc tier (configuration section <c>Runc</c>; see <see cref="RuncServiceCollectionExtensions"/>).</summary>
internal sealed record RuncOptions : ISandboxDirectories
{
    /// <summary>
    /// Root of everything the tier keeps on the host: <c>runc/</c> (runc's own --root, so that runc lists only our
    /// containers), <c>sandboxes/ID/</c> (bundle, overlay layers, logs), <c>netns/ID</c> (the network namespace,
    /// held by a bind mount) and <c>agent/</c> (agent bundles).
    /// </summary>
    public string StateDirectory { get; init; } = "/var/lib/paddock";

    /// <summary>The OCI runtime executable (a name looked up in PATH, or a path); set, it wins over <see cref="Runtime"/>.</summary>
    public string RuncBinary { get; init; } = "runc";

    /// <summary>
    /// runc, crun, or auto (<c>Runc:Runtime</c>): auto takes crun where it runs as the host is and runc elsewhere
    /// (<see cref="OciRuntimeChoice"/>).
    /// </summary>
    public OciRuntimeKind Runtime { get; init; } = OciRuntimeKind.Auto;

    /// <summary>The published NativeAOT agent; null: found next to the daemon or under artifacts/agent of the repository.</summary>
    public string? AgentBinary { get; init; }

    /// <summary>The cgroup (in every v1 hierarchy) under which each sandbox gets its own, named after its id.</summary>
    public string CgroupParent { get; init; } = "paddock";

    /// <summary>
    /// Who creates each sandbox's cgroup (<c>Runc:CgroupManager</c>, <c>cgroupfs</c> or <c>systemd</c>): the runtime
    /// itself below <see cref="CgroupParent"/>, or systemd as the scope paddock-ID.scope in the slice
    /// <c>CgroupParent.slice</c> (a unified host whose systemd delegates cgroups; runc/crun get
    /// <c>--systemd-cgroup</c>). systemd is refused on a v1 or hybrid host.
    /// </summary>
    public CgroupManager CgroupManager { get; init; } = CgroupManager.Cgroupfs;

    public IdMapping IdMapping { get; init; } = IdMapping.Default;

    /// <summary>How long <c>StartAsync</c> waits for the agent to answer /health before it gives up and cleans up.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Sets no_new_privs on the agent and so on everything in the sandbox, which makes set-user-ID programs (sudo, su)
    /// run without their privileges. Off by default (issue 18): E2B's default user can <c>sudo</c>, and any API caller
    /// may run commands as the sandbox's root anyway, so the bit guarded nothing inside the sandbox; what guards the
    /// host (user namespace, capability bounding set, seccomp) applies to root inside either way (SECURITY.md).
    /// On (<c>Runc:NoNewPrivileges=true</c>): a call that needs root names user "root" instead of using sudo.
    /// </summary>
    public bool NoNewPrivileges { get; init; }

    /// <summary>Size of each sandbox's /dev/shm (Docker's default, 64 MiB).</summary>
    public long ShmBytes { get; init; } = 64L * 1024 * 1024;

    /// <summary>
    /// RLIMIT_NOFILE of sandbox processes (soft and hard), as Docker's default daemon gives containers; capped at the
    /// daemon's own hard limit, which a sandbox cannot exceed.
    /// </summary>
    public ulong OpenFilesLimit { get; init; } = 1048576;

    /// <summary>
    /// Sandbox egress (a veth pair, NAT and the sandbox's policy; see <see cref="Networking.SandboxNetworks"/>).
    /// Null: sandboxes have loopback only, and a policy other than deny-all cannot be honoured.
    /// </summary>
    public Networking.NetworkOptions? Network { get; init; }

    /// <summary>
    /// Enforces each sandbox's disk size (bytes and files): its writable layer lives on a loop-mounted ext4 image of
    /// that size (<see cref="SandboxDisk"/>; 70 to 150 ms per create, measured). Off: the layer shares the state filesystem and
    /// the size is only reported.
    /// </summary>
    public bool EnforceDiskSize { get; init; } = true;

    /// <summary>
    /// One inode per this many bytes of a sandbox's disk, which bounds its number of files (4096: 262144 files in
    /// 1 GiB, 32768 in 128 MiB; ext4's default, 16384, is tight for package installs).
    /// </summary>
    public int DiskBytesPerInode { get; init; } = 4096;

    /// <summary>
    /// Sandbox disks made ahead per size (<see cref="DiskStock"/>), so that a create takes one instead of running
    /// mkfs and mount; 0: every create makes its own.
    /// </summary>
    public int DiskStockDepth { get; init; } = 2;

    public string NetworkStateDirectory => Path.Combine(StateDirectory, "network");

    public string RuncRoot => Path.Combine(StateDirectory, "runc");

    public string SandboxesDirectory => Path.Combine(StateDirectory, "sandboxes");

    public string NetnsDirectory => Path.Combine(StateDirectory, "netns");

    /// <summary>Where <see cref="DiskStock"/> keeps its disks: beside the sandbox directories, on their filesystem.</summary>
    public string DiskStockDirectory => Path.Combine(StateDirectory, "disk-stock");

    public string AgentBundlesDirectory => Path.Combine(StateDirectory, "agent");
}
