namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// What a tier does with a sandbox's cgroups, whatever the host mounts: the v1 hierarchies (and the hybrid layout,
/// v1 controllers beside a near-empty cgroup2) in <see cref="LegacyCgroups"/>, the unified cgroup2 hierarchy of a
/// stock Debian 12/13, Ubuntu 22.04+ or Fedora host in <see cref="UnifiedCgroups"/>. <see cref="Cgroups.Detect"/>
/// picks one from the mount table. Every sandbox's cgroup sits under <see cref="Parent"/> and is named after its id;
/// nothing but the daemon and the OCI runtime it starts ever creates cgroups there.
/// </summary>
/// <remarks>
/// A sandbox whose cgroup is gone is never an error here: each member says what it answers then (false, null, empty),
/// because a kill, a destroy or a crash can remove it between any two calls.
/// </remarks>
internal interface ISandboxCgroups
{
    /// <summary>Which layout this is: <c>v1</c>, <c>hybrid</c> or <c>unified</c> (for logs and docs).</summary>
    string Mode { get; }

    /// <summary>The cgroup under which every sandbox's cgroup is created, relative to the hierarchy's root.</summary>
    string Parent { get; }

    /// <summary>
    /// The OCI <c>linux.cgroupsPath</c> for the sandbox, in the form its runtime's cgroup manager expects: an absolute
    /// path for the cgroupfs manager, <c>slice:prefix:name</c> for the systemd one.
    /// </summary>
    string OciPath(string sandboxId);

    /// <summary>Whether a swap limit can be set (v1: memory.memsw.*; v2: memory.swap.max).</summary>
    bool HasSwapAccounting { get; }

    /// <summary>Ids of the sandbox cgroups that exist under <see cref="Parent"/> (for the cleanup of leftovers).</summary>
    IEnumerable<string> ExistingSandboxIds();

    /// <summary>Removes <see cref="Parent"/> where no sandbox cgroup is left under it; leaves it where one is.</summary>
    void RemoveParentIfEmpty();

    /// <summary>
    /// Kills whatever still runs in the sandbox's cgroup and removes it with its children. Throws
    /// <see cref="IOException"/> when a directory is still there after a bounded wait; a missing one is success.
    /// </summary>
    Task RemoveAsync(string sandboxId, CancellationToken cancellationToken);

    /// <summary>
    /// Gives the sandbox the CPU weight of background work (<paramref name="background"/>: the kernel's minimum) or
    /// of a sandbox in use (the kernel's default), creating its cgroup first when it does not exist yet, so that a
    /// start that follows joins it with this weight. False when the host has no cpu controller for it.
    /// </summary>
    bool SetCpuWeight(string sandboxId, bool background);

    /// <summary>
    /// Freezes every task of the sandbox and waits, bounded (about 100 ms), until the kernel says all are frozen; if
    /// they are not by then it thaws them again and answers false. False as well when the sandbox has no cgroup.
    /// </summary>
    Task<bool> FreezeAsync(string sandboxId, CancellationToken cancellationToken);

    /// <summary>Thaws every task of the sandbox; a no-op when it is not frozen or its cgroup is gone.</summary>
    void Thaw(string sandboxId);

    /// <summary>Whether the kernel reports the sandbox's cgroup frozen now; null when it has no freezer or is gone.</summary>
    bool? IsFrozen(string sandboxId);

    /// <summary>The pids of every process of the sandbox (its cgroup and the child cgroups below it).</summary>
    IReadOnlyList<int> ProcessesOf(string sandboxId);

    /// <summary>
    /// Kills every process of the sandbox and waits until its cgroup shows none. Throws <see cref="IOException"/> when
    /// some are still there after about 2 s.
    /// </summary>
    Task KillAllAsync(string sandboxId, CancellationToken cancellationToken);

    /// <summary>A sample of the sandbox's counters, or null when its cgroup (or a controller it needs) is missing.</summary>
    CgroupSample? Sample(string sandboxId);

    /// <summary>
    /// How many processes of the sandbox the kernel's OOM killer has killed at its memory limit (v1: memory.oom_control,
    /// v2: memory.events <c>oom_kill</c>); null when the host does not say (no memory controller, or the cgroup is gone).
    /// </summary>
    long? OomKills(string sandboxId);

    /// <summary>
    /// The sandbox's cgroup that carries the pids controller (where <see cref="PidReserve"/> makes its work child), or
    /// null when the host has none or the cgroup does not exist.
    /// </summary>
    string? PidsDirectory(string sandboxId);

    /// <summary>
    /// Creates <paramref name="directory"/>, a child of <see cref="PidsDirectory"/>, as a cgroup that can hold single
    /// threads of a process whose other threads stay in the parent (v1: any cgroup; v2: a <c>threaded</c> cgroup,
    /// with the pids controller enabled for it).
    /// </summary>
    void CreateThreadCgroup(string directory);

    /// <summary>Moves one thread (its host TID) into <paramref name="directory"/> (v1: <c>tasks</c>; v2: <c>cgroup.threads</c>).</summary>
    void MoveThread(string directory, int tid);
}
