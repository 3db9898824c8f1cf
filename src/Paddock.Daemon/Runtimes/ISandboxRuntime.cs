namespace Paddock.Daemon.Runtimes;

/// <summary>
/// One isolation tier (runc, gVisor; a KVM microVM tier later). Everything above this interface is
/// tier-agnostic: it must not assume namespaces, cgroups or a host process per sandbox. The daemon holds every tier
/// behind one <see cref="RuntimeTiers"/>, which is itself an <see cref="ISandboxRuntime"/> that routes each call to
/// the tier of the sandbox it names.
/// </summary>
internal interface ISandboxRuntime
{
    /// <summary>The tier's name as stored in a sandbox's record ("runc").</summary>
    string Name { get; }

    /// <summary>
    /// Starts a sandbox from <paramref name="spec"/> with the agent running inside, and returns once the agent answers.
    /// On failure nothing of the sandbox is left behind, and the error is a <see cref="SandboxStartException"/>
    /// (or <see cref="OperationCanceledException"/> when cancelled).
    /// </summary>
    Task<RuntimeSandbox> StartAsync(SandboxSpec spec, CancellationToken cancellationToken);

    /// <summary>
    /// Stops the sandbox and removes everything it had on the host (processes, mounts, network namespace, cgroups,
    /// writable layer). Idempotent: destroying a sandbox that is already gone succeeds.
    /// </summary>
    Task DestroyAsync(string sandboxId, CancellationToken cancellationToken);

    /// <summary>The sandboxes of this tier alive on the host now, found from the host's own state (for re-adoption after a restart).</summary>
    Task<IReadOnlyList<RuntimeSandbox>> ListAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Removes what is left on the host of sandboxes that are not alive (after a crash of the daemon or of the host:
    /// stopped containers, mounts, network namespaces, cgroups, directories), and returns their ids. Sandboxes that
    /// are alive, or being started or destroyed by this instance right now, are left alone. Meant for daemon start,
    /// after <see cref="ListAsync"/>.
    /// </summary>
    Task<IReadOnlyList<string>> CleanupLeftoversAsync(CancellationToken cancellationToken);

    /// <summary>Resource usage now, or null when the sandbox is gone.</summary>
    Task<SandboxUsage?> GetUsageAsync(string sandboxId, CancellationToken cancellationToken);

    /// <summary>
    /// Opens a stream to <paramref name="port"/> inside the sandbox (the agent's port or any port a process listens on).
    /// The proxy uses this for all sandbox traffic, so that it needs no address on a shared host network.
    /// Throws <see cref="SandboxNotFoundException"/> when the sandbox does not exist and
    /// <see cref="SandboxPortUnreachableException"/> when nothing accepts connections on the port.
    /// </summary>
    ValueTask<Stream> ConnectAsync(string sandboxId, int port, CancellationToken cancellationToken);

    /// <summary>
    /// Copies the sandbox's filesystem changes (everything it added, changed or deleted relative to its template's
    /// layers, deletions as overlayfs whiteouts) into the new directory <paramref name="destination"/>, as one
    /// consistent point in time, and returns how many bytes the copy holds. The sandbox keeps running; the copy
    /// shares no inode the sandbox can still write. Throws <see cref="SandboxNotFoundException"/> when it is gone.
    /// </summary>
    Task<long> SnapshotFilesystemAsync(string sandboxId, string destination, CancellationToken cancellationToken);

    /// <summary>
    /// Replaces the egress policy of a running sandbox; it applies to every packet from then on. Throws
    /// <see cref="SandboxNotFoundException"/> when the sandbox does not exist and
    /// <see cref="SandboxNetworkUnsupportedException"/> when this tier (or this host's configuration) has no egress.
    /// </summary>
    Task UpdateNetworkAsync(string sandboxId, Networking.EgressPolicy policy, CancellationToken cancellationToken) =>
        throw new SandboxNetworkUnsupportedException(Name);

    /// <summary>
    /// Gives the sandbox's processes a background share of the CPU (<paramref name="background"/>: they run only
    /// when nothing else wants the CPU) or the normal one. Warm pool members wait in the background, so that starting
    /// and warming them does not slow down sandboxes in use. May be called before <see cref="StartAsync"/> with the id
    /// the start will use: the sandbox then starts at that priority. A no-op for tiers without such a knob.
    /// </summary>
    Task SetCpuPriorityAsync(string sandboxId, bool background, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// Kills every process of the sandbox and returns once none is left, without removing anything else of it
    /// (<see cref="DestroyAsync"/> does that, and must still be called). False when this tier cannot do that apart
    /// from <see cref="DestroyAsync"/>: the caller then destroys it before answering.
    /// </summary>
    Task<bool> KillProcessesAsync(string sandboxId, CancellationToken cancellationToken) => Task.FromResult(false);

    /// <summary>
    /// Freezes (<paramref name="frozen"/>) or thaws every process of the sandbox, for the idle freezer
    /// (<see cref="Sandboxes.IdleFreezer"/>). A freeze returns true once every process is frozen; false when this tier
    /// cannot freeze, or when the freeze did not complete within a bound (the sandbox is then thawed again). A thaw
    /// of a sandbox that is not frozen, or gone, is a no-op. <see cref="KillProcessesAsync"/> and
    /// <see cref="DestroyAsync"/> work on a frozen sandbox (they thaw it).
    /// </summary>
    Task<bool> SetFrozenAsync(string sandboxId, bool frozen, CancellationToken cancellationToken) => Task.FromResult(false);

    /// <summary>
    /// Whether the sandbox's agent is its only process (no command, pty, server or daemonized child of the user):
    /// the idle freezer freezes only such a sandbox. False when this tier cannot tell, or the sandbox is gone.
    /// </summary>
    ValueTask<bool> IsOnlyAgentRunningAsync(string sandboxId, CancellationToken cancellationToken) => ValueTask.FromResult(false);

    /// <summary>What this tier keeps of a sandbox it pauses (<see cref="PauseAsync"/>); <see cref="PauseSupport.None"/>: it cannot pause.</summary>
    PauseSupport PauseSupport => PauseSupport.None;

    /// <summary>
    /// Pauses a running sandbox: on return no process of it runs and it holds no host process, memory, mount, cgroup
    /// or network link, while what a later <see cref="ResumeAsync"/> needs is on disk under the tier's state directory
    /// (its writable layer always; with <paramref name="keepMemory"/> also its processes' memory and kernel state),
    /// so that it survives a restart of the daemon and of the host. Crash-safe: a daemon killed during a pause leaves
    /// either a complete paused sandbox (listed by <see cref="ListPausedAsync"/>) or one that
    /// <see cref="CleanupLeftoversAsync"/> removes whole. Throws <see cref="SandboxPauseUnsupportedException"/> when
    /// the tier cannot keep what was asked (nothing changed then), <see cref="SandboxNotFoundException"/> when the
    /// sandbox is gone, and <see cref="IOException"/> when the pause failed (the sandbox is then still running, or,
    /// when it could not be brought back, gone: the caller asks <see cref="ListAsync"/>).
    /// </summary>
    Task PauseAsync(string sandboxId, bool keepMemory, CancellationToken cancellationToken) =>
        throw new SandboxPauseUnsupportedException(Name, keepMemory);

    /// <summary>
    /// Brings a paused sandbox back under the same id and returns once its agent answers: from its memory image when
    /// the pause kept one and <paramref name="keepMemory"/> is true (its processes go on where they stopped), else
    /// booted afresh on its kept filesystem (a memory image it had is then deleted: E2B's connect with
    /// <c>memory: false</c>, the SDK's <c>onResume: "reboot"</c>). On failure it stays paused (nothing of the attempt
    /// is left running, its memory image kept) and the error is a <see cref="SandboxStartException"/>;
    /// <see cref="SandboxNotFoundException"/> when no paused sandbox has this id.
    /// </summary>
    Task<RuntimeSandbox> ResumeAsync(string sandboxId, bool keepMemory, CancellationToken cancellationToken) =>
        throw new SandboxNotFoundException(sandboxId);

    /// <summary>
    /// Makes every later fresh boot of the sandbox (a filesystem-only resume) start its agent with
    /// <paramref name="envVars"/> and <paramref name="accessToken"/> (null: none), which a pool's hand-over gave only to
    /// the running agent. The default keeps nothing: a tier that cannot pause never boots a sandbox twice.
    /// </summary>
    Task KeepIdentityAsync(string sandboxId, IReadOnlyDictionary<string, string> envVars, string? accessToken, CancellationToken cancellationToken) =>
        Task.CompletedTask;

    /// <summary>The sandboxes of this tier that are paused on the host (complete pauses only), with whether each kept its memory.</summary>
    Task<IReadOnlyList<PausedSandbox>> ListPausedAsync(CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<PausedSandbox>>([]);

    /// <summary>Whether this tier can fork a running sandbox with its memory (<see cref="ForkAsync"/>).</summary>
    bool CanFork => false;

    /// <summary>
    /// Forks a running sandbox: its memory, processes and files are captured once, at one instant, while it keeps
    /// running (under the same id, host pid and deadline), and one new sandbox is started from that capture for each of
    /// <paramref name="copyIds"/> (ids the caller made, new to every tier), each with its own writable layer, network
    /// namespace, link address (the source's egress policy) and host resources. Returns one outcome per copy, in order:
    /// each copy either runs with its agent answering or left nothing behind. Crash-safe: a daemon killed during a fork
    /// leaves the source running and each copy either running or something <see cref="CleanupLeftoversAsync"/> removes
    /// whole (the capture included). Throws <see cref="SandboxForkUnsupportedException"/> when the tier cannot fork
    /// (nothing changed), <see cref="SandboxNotFoundException"/> when the source is not running, and
    /// <see cref="IOException"/> when the capture failed (no copy was started; the source still runs).
    /// </summary>
    Task<IReadOnlyList<ForkedCopy>> ForkAsync(string sourceId, IReadOnlyList<string> copyIds, CancellationToken cancellationToken) =>
        throw new SandboxForkUnsupportedException(Name);

    /// <summary>
    /// Writes a capture of the running sandbox (its memory, processes and files at one instant, as a fork takes one)
    /// into the new directory <paramref name="destination"/>, which outlives the sandbox, and returns its size in bytes.
    /// The sandbox keeps running. Throws <see cref="MemorySnapshotUnavailableException"/> when the tier cannot
    /// (<see cref="CanFork"/>) or the sandbox mounts volumes (nothing changed), <see cref="SandboxNotFoundException"/>
    /// when it is not running, <see cref="IOException"/> when the capture failed (nothing is left in
    /// <paramref name="destination"/> then).
    /// </summary>
    Task<long> SnapshotMemoryAsync(string sandboxId, string destination, CancellationToken cancellationToken) =>
        throw new MemorySnapshotUnavailableException($"the {Name} isolation tier cannot capture a sandbox's memory");

    /// <summary>
    /// Starts <see cref="SandboxSpec.SandboxId"/> as a restore of a capture <see cref="SnapshotMemoryAsync"/> wrote:
    /// its processes run on from the capture's instant, on a copy of its files, with the spec's egress policy and its own
    /// network link. The capture's limits (CPU, memory, disk) and agent settings (token, variables) come back with it:
    /// the caller gives the agent the new sandbox's own with envd's <c>/init</c>. Fails like <see cref="StartAsync"/>.
    /// </summary>
    Task<RuntimeSandbox> RestoreMemoryAsync(string image, SandboxSpec spec, CancellationToken cancellationToken) =>
        throw new SandboxForkUnsupportedException(Name);

    /// <summary>
    /// Called (on the thread pool) with a sandbox's id when its agent exits on its own (crashed, OOM-killed, killed
    /// from outside), so that the daemon ends it at once instead of at its next sweep. A tier that cannot tell never
    /// calls it (the default keeps nothing).
    /// </summary>
    Func<string, Task>? OnAgentExited { get => null; set { } }
}

/// <summary>What a sandbox is started with.</summary>
internal sealed record SandboxSpec
{
    public required string SandboxId { get; init; }

    /// <summary>
    /// The template's read-only layers on the host, top first (overlayfs's <c>lowerdir=top:...:bottom</c>): the
    /// bottom one is a whole root filesystem, each one above holds only what changed, deletions as whiteouts.
    /// </summary>
    public required IReadOnlyList<string> TemplateLayers { get; init; }

    public required ResourceLimits Limits { get; init; }

    /// <summary>Environment every process in the sandbox starts with.</summary>
    public IReadOnlyDictionary<string, string> EnvVars { get; init; } = new Dictionary<string, string>();

    /// <summary>When set, the agent requires it (E2B's <c>secure</c> sandboxes).</summary>
    public string? AgentAccessToken { get; init; }

    /// <summary>
    /// The account the agent runs a call as when the call names none: the template's default user ("user" in
    /// <c>base</c>). Null: the agent's own account (root inside the sandbox), for templates without that account.
    /// </summary>
    public string? DefaultUser { get; init; }

    /// <summary>
    /// The working directory of a command that names none (the template's WORKDIR, as E2B runs commands in it);
    /// null: the user's home.
    /// </summary>
    public string? DefaultWorkdir { get; init; }

    public bool AllowInternetAccess { get; init; } = true;

    /// <summary>The egress policy; null: allow all, or deny all when <see cref="AllowInternetAccess"/> is false.</summary>
    public Networking.EgressPolicy? Egress { get; init; }

    public Networking.EgressPolicy EffectiveEgress =>
        Egress ?? (AllowInternetAccess ? Networking.EgressPolicy.AllowAll : Networking.EgressPolicy.DenyAll);

    public string Hostname { get; init; } = "sandbox";

    /// <summary>
    /// The isolation tier to start on (a tier's <see cref="ISandboxRuntime.Name"/>); null: the daemon's default. Read by
    /// <see cref="RuntimeTiers"/> only; a tier is handed only the specs meant for it.
    /// </summary>
    public string? Isolation { get; init; }

    /// <summary>Called as each step of the start ends, with the step's name (for the create's trace); may be null.</summary>
    public Action<string>? MarkStep { get; init; }

    /// <summary>
    /// Host directories the sandbox sees read-write at a path of its own (volumes: Volumes/). The caller has checked
    /// the paths (absolute, normalized, none inside another, none over /proc, /dev, /sys, the agent's bundle or the
    /// files a tier mounts itself); a tier makes each one appear as it is on the host, owners seen through the
    /// sandbox's id mapping, so that files one sandbox wrote are the next one's. Empty: none.
    /// </summary>
    public IReadOnlyList<SandboxMount> Mounts { get; init; } = [];
}

/// <summary>A host directory shown read-write inside a sandbox at <paramref name="Path"/>.</summary>
internal sealed record SandboxMount(string HostDirectory, string Path);
/// <summary>What a tier keeps of a sandbox it pauses.</summary>
internal enum PauseSupport
{
    /// <summary>It cannot pause.</summary>
    None,

    /// <summary>The writable layer only: the processes end, and a resume boots the sandbox afresh on its files.</summary>
    FilesystemOnly,

    /// <summary>The writable layer and a checkpoint of every process's memory and kernel state: a resume goes on where it stopped.</summary>
    FilesystemAndMemory,
}

/// <summary>One copy of a fork: <see cref="Sandbox"/> when it runs, else <see cref="Error"/> (and nothing of it is left).</summary>
internal sealed record ForkedCopy(string SandboxId, RuntimeSandbox? Sandbox, string? Error);

/// <summary>A paused sandbox as the tier found it on the host.</summary>
internal sealed record PausedSandbox(string SandboxId, bool HasMemory, DateTimeOffset PausedAt)
{
    /// <summary>The tier it belongs to, as <see cref="RuntimeTiers"/> listed it; null from a tier itself.</summary>
    public string? Tier { get; init; }
}

/// <summary>Limits from the create request (defaults are stated in the README).</summary>
internal sealed record ResourceLimits(int CpuCount, long MemoryBytes, int MaxPids, long DiskBytes);

/// <summary>A running sandbox as the runtime sees it.</summary>
internal sealed record RuntimeSandbox(string SandboxId, int? HostPid, DateTimeOffset StartedAt)
{
    /// <summary>The tier it runs on, as <see cref="RuntimeTiers"/> started or listed it; null from a tier itself.</summary>
    public string? Tier { get; init; }
}

/// <summary>A sample of a sandbox's resource use (E2B's metrics route).</summary>
internal sealed record SandboxUsage(DateTimeOffset Timestamp, double CpuUsedPercent, int CpuCount, long MemoryUsedBytes, long MemoryTotalBytes, long DiskUsedBytes, long DiskTotalBytes);
