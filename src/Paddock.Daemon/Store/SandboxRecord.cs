namespace Paddock.Daemon.Store;

/// <summary>Where a sandbox is in its life. Only <see cref="Running"/> sandboxes are reachable through the API and the proxy.</summary>
internal enum SandboxState
{
    /// <summary>Recorded, the runtime is starting it; not yet returned to the client.</summary>
    Starting,

    Running,

    /// <summary>
    /// Paused: no process runs; its writable layer (and, on a tier that keeps memory, its memory image) waits on disk
    /// for a resume. Not reachable through the proxy (or only to resume it, with <see cref="SandboxRecord.AutoResume"/>).
    /// </summary>
    Paused,

    /// <summary>Gone for good; <see cref="SandboxRecord.EndReason"/> says why (killed, timed out, lost, failed to start).</summary>
    Killed,
}

/// <summary>
/// One sandbox as the daemon remembers it. Environment variables are deliberately not part of it: they often hold
/// secrets, and the runtime already has them, so the daemon never writes them to disk or to a log.
/// </summary>
internal sealed record SandboxRecord
{
    public required string SandboxId { get; init; }

    public required string TemplateId { get; init; }

    /// <summary>The name the client asked for when it differs from <see cref="TemplateId"/> (E2B's <c>alias</c>).</summary>
    public string? Alias { get; init; }

    /// <summary>
    /// The team that created it: only that team's keys see, connect to and kill it. Defaults to the default team (what
    /// records made before teams existed belong to).
    /// </summary>
    public string TeamId { get; init; } = DefaultTeamId;

    /// <summary>The team of everything made before teams existed, of the first key and of <c>PADDOCK_API_KEY</c>.</summary>
    public const string DefaultTeamId = "default";

    /// <summary>The isolation tier that runs it ("runc").</summary>
    public required string RuntimeName { get; init; }

    public required SandboxState State { get; init; }

    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    public required int CpuCount { get; init; }

    public required int MemoryMB { get; init; }

    public required int DiskSizeMB { get; init; }

    public required int MaxPids { get; init; }

    public required DateTimeOffset StartedAt { get; init; }

    /// <summary>The deadline: the sandbox is killed when it passes. POST /timeout moves it.</summary>
    public required DateTimeOffset EndAt { get; init; }

    /// <summary>When it actually ended (null while alive).</summary>
    public DateTimeOffset? EndedAt { get; init; }

    /// <summary>Why it ended, in words (null while alive).</summary>
    public string? EndReason { get; init; }

    /// <summary>The agent's access token (E2B's <c>envdAccessToken</c>), null for sandboxes created with <c>secure: false</c>.</summary>
    public string? EnvdAccessToken { get; init; }

    /// <summary>Required on every non-agent port when set (E2B's <c>trafficAccessToken</c>, for <c>allowPublicTraffic: false</c>).</summary>
    public string? TrafficAccessToken { get; init; }

    /// <summary>As the client set it; null when it did not say.</summary>
    public bool? AllowInternetAccess { get; init; }

    /// <summary>The client asked for pause-on-timeout (E2B's <c>autoPause</c>): at its deadline it is paused instead of killed.</summary>
    public bool AutoPause { get; init; }

    /// <summary>Whether a pause at the deadline keeps memory (E2B's <c>autoPauseMemory</c>; default true).</summary>
    public bool AutoPauseMemory { get; init; } = true;

    /// <summary>E2B's <c>autoResume.enabled</c>: the first request for it through the proxy resumes a paused sandbox.</summary>
    public bool AutoResume { get; init; }

    /// <summary>When it was last paused (null: never, or running since).</summary>
    public DateTimeOffset? PausedAt { get; init; }

    /// <summary>Whether its pause kept memory (null while running).</summary>
    public bool? PausedWithMemory { get; init; }

    /// <summary>
    /// In cluster mode, the node that runs it (set by the PostgreSQL store from its own node id when the record is
    /// first written, whatever the record says); null on a single machine and in SQLite.
    /// </summary>
    public string? NodeId { get; init; }
}

/// <summary>One line of a sandbox's log: what the daemon did to it and saw of it.</summary>
internal sealed record SandboxLogLine(long Sequence, DateTimeOffset Timestamp, SandboxLogLevel Level, string Message);

internal enum SandboxLogLevel
{
    Debug,
    Info,
    Warn,
    Error,
}
