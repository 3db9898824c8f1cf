using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Runtimes.Gvisor;

/// <summary>How the Sentry intercepts the system calls of sandbox processes (runsc <c>--platform</c>).</summary>
internal enum GvisorPlatform
{
    /// <summary>runsc's default: seccomp traps and shared-memory stubs; the faster of the two here.</summary>
    Systrap,

    /// <summary>ptrace(2) of stub processes: slower, for hosts where systrap does not work.</summary>
    Ptrace,
}

/// <summary>
/// Settings of the gVisor tier (configuration section <c>Gvisor</c>). Its state, cgroups and network are its own,
/// apart from the runc tier's, so that both tiers run side by side on one host and neither's leftover sweep ever
/// takes the other's sandboxes for leftovers.
/// </summary>
internal sealed record GvisorOptions : ISandboxDirectories
{
    /// <summary>Where scripts/install-runsc puts Debian 13's runsc.</summary>
    public const string DefaultRunscBinary = "/usr/local/lib/paddock/runsc";

    /// <summary>
    /// Root of everything the tier keeps on the host: <c>mntns</c> (the mount namespace runsc starts in,
    /// <see cref="GvisorMountNamespace"/>), <c>runsc/</c> (runsc's --root), <c>agent/</c>, <c>network/</c>, and
    /// <c>shared/</c> (a shared mount holding what is mounted per sandbox: <c>sandboxes/ID/</c>, <c>netns/ID</c>,
    /// <c>disk-stock/</c>).
    /// </summary>
    public string StateDirectory { get; init; } = "/var/lib/paddock/gvisor";

    /// <summary>runsc: Debian 13's 2024 build (refused: Debian 12's 2022 one, see <see cref="GvisorProbe"/>).</summary>
    public string RunscBinary { get; init; } = DefaultRunscBinary;

    public GvisorPlatform Platform { get; init; } = GvisorPlatform.Systrap;

    /// <summary>
    /// A directory for runsc's debug logs (<c>--debug --debug-log=DIR/</c>, one file per runsc process: boot is the
    /// Sentry, gofer the gofer); null: none. For diagnosis: the boot log lists the host system calls the Sentry's
    /// seccomp filter allows ("Installing seccomp filters for N syscalls", SECURITY.md's surface figure).
    /// </summary>
    public string? DebugLogDirectory { get; init; }

    /// <summary>The cgroup under which each sandbox's Sentry and gofer get their own, named after its id.</summary>
    public string CgroupParent { get; init; } = "paddock-gvisor";

    public IdMapping IdMapping { get; init; } = IdMapping.Default;

    /// <summary>How long a start waits for the agent to answer /health before it gives up and cleans up.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Sets no_new_privs on the agent and so on everything in the sandbox (as the runc tier's option). Off by default,
    /// as on the runc tier, so that the default user's sudo works as in E2B's sandboxes: any API caller may already
    /// run commands as root inside, and root inside the Sentry is no more than that (SECURITY.md).
    /// </summary>
    public bool NoNewPrivileges { get; init; }

    /// <summary>RLIMIT_NOFILE of sandbox processes (inside the Sentry).</summary>
    public ulong OpenFilesLimit { get; init; } = 1048576;

    /// <summary>
    /// Host tasks the pids cgroup allows beyond the sandbox's own pid limit: the Sentry's and the gofer's threads and
    /// the platform's stub processes are host tasks too (measured: about 40 for an idle sandbox running the agent).
    /// </summary>
    public int HostTaskAllowance { get; init; } = 192;

    /// <summary>
    /// The sandboxes' links (a veth pair each, NAT, the egress policy). Unlike the runc tier's, never off: the daemon
    /// reaches the agent through the link (the sandbox's loopback is inside the Sentry, <see cref="GvisorRuntime.ConnectAsync"/>),
    /// so a sandbox without egress gets a link with a deny-all policy. Its own table, interface prefix and pool, so
    /// that it never touches the runc tier's.
    /// </summary>
    public Networking.NetworkOptions Network { get; init; } = new()
    {
        // Apart from the runc tier's 10.201.0.0/16 and the ranges derived for test daemons (10.202-10.205).
        Pool = "10.208.0.0/16",
        TableName = "paddock_gvisor",
        InterfacePrefix = "pgv",
    };

    /// <summary>
    /// Whether a runtime disposed with no gVisor sandbox left unmounts the tier's namespace and state mounts and removes
    /// its state directory (a daemon's stop). Off only where several runtime instances share one state at once (the
    /// tests' restart simulations), which remove it themselves at the end.
    /// </summary>
    public bool ReleaseStateWhenUnused { get; init; } = true;

    /// <summary>
    /// The most bytes of the agent's output (and runsc's own messages) kept in a sandbox's host-side agent.log; at the
    /// bound it rotates to agent.log.1, so the host holds at most twice this per sandbox (<see cref="AgentLogDrain"/>).
    /// </summary>
    public long AgentLogBytes { get; init; } = 1L << 20;

    /// <summary>Enforces each sandbox's disk size with a loop-mounted image per sandbox, as the runc tier does.</summary>
    public bool EnforceDiskSize { get; init; } = true;

    public int DiskBytesPerInode { get; init; } = 4096;

    /// <summary>Sandbox disks made ahead per size, as <see cref="Runc.RuncOptions.DiskStockDepth"/>.</summary>
    public int DiskStockDepth { get; init; } = 2;

    /// <summary>The mount namespace file (see <see cref="GvisorMountNamespace"/>).</summary>
    public string MountNamespaceFile => Path.Combine(StateDirectory, "mntns");

    /// <summary>The shared mount: what is mounted under it is also seen in <see cref="MountNamespaceFile"/>'s namespace.</summary>
    public string SharedDirectory => Path.Combine(StateDirectory, "shared");

    public string SandboxesDirectory => Path.Combine(SharedDirectory, "sandboxes");

    public string NetnsDirectory => Path.Combine(SharedDirectory, "netns");

    public string DiskStockDirectory => Path.Combine(SharedDirectory, "disk-stock");

    public string RunscRoot => Path.Combine(StateDirectory, "runsc");

    /// <summary>A fork's capture (memory image, writable layer, files) while its copies are restored; removed after, or by the next cleanup.</summary>
    public string ForksDirectory => Path.Combine(StateDirectory, "forks");

    public string NetworkStateDirectory => Path.Combine(StateDirectory, "network");

    public string AgentBundlesDirectory => Path.Combine(StateDirectory, "agent");
}
