namespace Paddock.Client;

/// <summary>How to create a sandbox.</summary>
public sealed record SandboxOptions
{
    /// <summary>The lifetime E2B's SDKs give a new sandbox: 300 seconds.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(300);

    /// <summary>Where the control plane is and how to authenticate; default: from the environment.</summary>
    public ConnectionOptions? Connection { get; init; }

    /// <summary>How long the sandbox lives before the control plane ends it; default <see cref="DefaultTimeout"/>.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Metadata stored with the sandbox (filterable in <see cref="Sandbox.ListAsync"/>).</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>Environment variables for every process in the sandbox.</summary>
    public IReadOnlyDictionary<string, string>? Envs { get; init; }

    /// <summary>Require an access token for envd traffic (the SDK sends it for you).</summary>
    public bool? Secure { get; init; }

    /// <summary>Whether the sandbox may reach the internet; default: the server's.</summary>
    public bool? AllowInternetAccess { get; init; }

    /// <summary>
    /// Egress the sandbox may use even when the rest is denied: CIDRs, addresses or domain names (E2B's
    /// <c>network.allowOut</c>); null: none named.
    /// </summary>
    public IReadOnlyList<string>? AllowOut { get; init; }

    /// <summary>Egress the sandbox may not use: CIDRs or addresses (E2B's <c>network.denyOut</c>); null: none named.</summary>
    public IReadOnlyList<string>? DenyOut { get; init; }

    /// <summary>
    /// Paddock's isolation tier for this sandbox: <c>"runc"</c> (a hardened container) or <c>"gvisor"</c> (a user-space
    /// kernel between the code and the host). Null: the team's tier, else the template's, else the server's default.
    /// Not sent when null, so the option costs nothing against E2B's own service.
    /// </summary>
    public string? Isolation { get; init; }

    /// <summary>
    /// What the timeout does (E2B's <c>lifecycle.onTimeout</c>): <see cref="OnTimeout.Kill"/> (the default) or
    /// <see cref="OnTimeout.Pause"/>, which keeps the sandbox paused until a resume.
    /// </summary>
    public OnTimeout OnTimeout { get; init; } = OnTimeout.Kill;

    /// <summary>With <see cref="OnTimeout.Pause"/>: whether the pause keeps memory (default true) or the filesystem only.</summary>
    public bool? PauseKeepsMemory { get; init; }

    /// <summary>With <see cref="OnTimeout.Pause"/>: the first request to the paused sandbox through the proxy resumes it (E2B's <c>autoResume</c>).</summary>
    public bool AutoResume { get; init; }

    /// <summary>
    /// What <c>await using</c> (<see cref="Sandbox.DisposeAsync"/>) does: true (the default) kills the sandbox,
    /// false leaves it running until its timeout.
    /// </summary>
    public bool KillOnDispose { get; init; } = true;

    /// <summary>
    /// Volumes to mount, path inside the sandbox to volume name (E2B's <c>volumeMounts</c>); the volumes must be the
    /// caller's team's (<see cref="Volumes"/>). Null: none.
    /// </summary>
    public IReadOnlyDictionary<string, string>? VolumeMounts { get; init; }
}

/// <summary>What a sandbox's timeout does to it.</summary>
public enum OnTimeout
{
    /// <summary>It is killed.</summary>
    Kill,

    /// <summary>It is paused, to be resumed later.</summary>
    Pause,
}

/// <summary>How to connect to an existing sandbox.</summary>
public sealed record SandboxConnectOptions
{
    /// <summary>Where the control plane is and how to authenticate; default: from the environment.</summary>
    public ConnectionOptions? Connection { get; init; }

    /// <summary>
    /// The sandbox's lifetime from now, sent with the connect call (it only ever extends it);
    /// default <see cref="SandboxOptions.DefaultTimeout"/>.
    /// </summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>What disposing the returned object does: false (the default) leaves the sandbox running; true kills it.</summary>
    public bool KillOnDispose { get; init; }
}

/// <summary>Which sandboxes <see cref="Sandbox.ListAsync"/> returns.</summary>
public sealed record SandboxListFilter
{
    /// <summary>Only sandboxes whose metadata holds all of these pairs.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>Only sandboxes in these states; default: running and paused.</summary>
    public IReadOnlyList<SandboxState>? States { get; init; }

    /// <summary>Only sandboxes of this template (id or alias).</summary>
    public string? Template { get; init; }

    /// <summary>How many sandboxes to fetch per request (1 to 100; default: the server's).</summary>
    public int? PageSize { get; init; }
}

/// <summary>The state of a sandbox.</summary>
public enum SandboxState
{
    /// <summary>Running.</summary>
    Running,

    /// <summary>Paused (its state saved, not running).</summary>
    Paused,
}

/// <summary>What the control plane knows about a sandbox.</summary>
public sealed record SandboxInfo
{
    /// <summary>The sandbox's id.</summary>
    public required string SandboxId { get; init; }

    /// <summary>The template it was created from.</summary>
    public required string TemplateId { get; init; }

    /// <summary>The template's alias, when it has one.</summary>
    public string? Alias { get; init; }

    /// <summary>When it started.</summary>
    public DateTimeOffset StartedAt { get; init; }

    /// <summary>When it will be ended unless its timeout is changed.</summary>
    public DateTimeOffset EndAt { get; init; }

    /// <summary>Its state.</summary>
    public SandboxState State { get; init; }

    /// <summary>CPU cores.</summary>
    public int CpuCount { get; init; }

    /// <summary>Memory in MiB.</summary>
    public int MemoryMB { get; init; }

    /// <summary>Disk size in MiB.</summary>
    public int DiskSizeMB { get; init; }

    /// <summary>The metadata it was created with.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>The version of envd inside it.</summary>
    public string? EnvdVersion { get; init; }

    /// <summary>Paddock: the isolation tier it runs on ("runc", "gvisor"); null from a service that does not say.</summary>
    public string? Isolation { get; init; }
}

/// <summary>One sample of a sandbox's resource use.</summary>
public sealed record SandboxMetrics
{
    /// <summary>When the sample was taken.</summary>
    public DateTimeOffset Timestamp { get; init; }

    /// <summary>CPU cores.</summary>
    public int CpuCount { get; init; }

    /// <summary>CPU use in percent (of all its cores).</summary>
    public double CpuUsedPercent { get; init; }

    /// <summary>Memory in use, in bytes.</summary>
    public long MemoryUsed { get; init; }

    /// <summary>Memory available to it, in bytes.</summary>
    public long MemoryTotal { get; init; }

    /// <summary>Page cache, in bytes.</summary>
    public long MemoryCache { get; init; }

    /// <summary>Disk in use, in bytes.</summary>
    public long DiskUsed { get; init; }

    /// <summary>Disk size, in bytes.</summary>
    public long DiskTotal { get; init; }
}

/// <summary>One log entry of a sandbox.</summary>
public sealed record SandboxLogEntry
{
    /// <summary>When it was logged.</summary>
    public DateTimeOffset Timestamp { get; init; }

    /// <summary>debug, info, warn or error.</summary>
    public string Level { get; init; } = "info";

    /// <summary>The message.</summary>
    public string Message { get; init; } = "";

    /// <summary>Structured fields.</summary>
    public IReadOnlyDictionary<string, string> Fields { get; init; } = new Dictionary<string, string>();
}

/// <summary>A template sandboxes can be created from.</summary>
public sealed record TemplateInfo
{
    /// <summary>The template's id.</summary>
    public required string TemplateId { get; init; }

    /// <summary>Its names (aliases).</summary>
    public IReadOnlyList<string> Names { get; init; } = [];

    /// <summary>Its last successful build.</summary>
    public string? BuildId { get; init; }

    /// <summary>CPU cores its sandboxes get.</summary>
    public int CpuCount { get; init; }

    /// <summary>Memory in MiB its sandboxes get.</summary>
    public int MemoryMB { get; init; }

    /// <summary>Disk size in MiB its sandboxes get.</summary>
    public int DiskSizeMB { get; init; }

    /// <summary>When it was created.</summary>
    public DateTimeOffset? CreatedAt { get; init; }

    /// <summary>How many sandboxes were created from it.</summary>
    public long SpawnCount { get; init; }

    /// <summary>The build status (e.g. ready).</summary>
    public string? BuildStatus { get; init; }

    /// <summary>The envd version in it.</summary>
    public string? EnvdVersion { get; init; }
}

/// <summary>One copy of a fork: <see cref="Sandbox"/> when it runs, else <see cref="Error"/>.</summary>
public sealed record ForkResult(Sandbox? Sandbox, SandboxException? Error);
