namespace Paddock.Client;

/// <summary>An API key as listed: never the key itself, which is shown once, when it is created.</summary>
public sealed record ApiKeyInfo
{
    /// <summary>The key's id (a UUID): what renaming and revoking take.</summary>
    public required string Id { get; init; }

    /// <summary>The name given at creation.</summary>
    public required string Name { get; init; }

    /// <summary>A form safe to show: the prefix, an ellipsis and the key's last four characters (<c>e2b_…1a2b</c>).</summary>
    public required string Mask { get; init; }

    /// <summary>When the key was made.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>When it last authenticated a request (to about a minute); null if never.</summary>
    public DateTimeOffset? LastUsed { get; init; }
}

/// <summary>A new API key: <see cref="Key"/> is the only time the key is ever shown.</summary>
public sealed record CreatedApiKey
{
    /// <summary>The key's id.</summary>
    public required string Id { get; init; }

    /// <summary>The key itself: keep it, the server stores only its hash.</summary>
    public required string Key { get; init; }

    /// <summary>The name given at creation.</summary>
    public required string Name { get; init; }

    /// <summary>When the key was made.</summary>
    public DateTimeOffset CreatedAt { get; init; }
}

/// <summary>A team's ceilings on what its running (and paused) sandboxes hold together; null means no team limit.</summary>
/// <param name="MaxSandboxes">Sandboxes at once.</param>
/// <param name="MaxCpus">vCPUs of all its sandboxes together.</param>
/// <param name="MaxMemoryMB">Memory of all its sandboxes together, in MiB.</param>
/// <param name="Isolation">The one isolation tier its sandboxes may run on ("gvisor"); its keys cannot ask for another. Null: any.</param>
/// <param name="MaxPausedSandboxes">Paused sandboxes it may keep; null: the daemon's <c>--max-paused-per-team</c>.</param>
public sealed record TeamLimits(int? MaxSandboxes = null, int? MaxCpus = null, int? MaxMemoryMB = null, string? Isolation = null, int? MaxPausedSandboxes = null);

/// <summary>What a team's running sandboxes hold now.</summary>
/// <param name="Sandboxes">Sandboxes running or starting.</param>
/// <param name="Cpus">Their vCPUs together.</param>
/// <param name="MemoryMB">Their memory together, in MiB.</param>
/// <param name="PausedSandboxes">Its paused sandboxes (they hold no CPU or memory).</param>
public sealed record TeamUsage(int Sandboxes, int Cpus, long MemoryMB, int PausedSandboxes = 0);

/// <summary>A team: it owns API keys and sandboxes.</summary>
public sealed record TeamInfo
{
    /// <summary>The team's id.</summary>
    public required string TeamId { get; init; }

    /// <summary>The team's name.</summary>
    public required string Name { get; init; }

    /// <summary>The team of the key that asked.</summary>
    public bool IsCallersTeam { get; init; }

    /// <summary>Keys of an admin team may manage teams.</summary>
    public bool IsAdmin { get; init; }

    /// <summary>The team's limits.</summary>
    public required TeamLimits Limits { get; init; }

    /// <summary>What its sandboxes hold now.</summary>
    public required TeamUsage Usage { get; init; }
}
