namespace Paddock.Daemon.Store;

/// <summary>
/// Per-team ceilings on what its running sandboxes may hold together. Null means no team limit: the daemon-wide
/// <c>--max-sandboxes</c> still holds. <paramref name="Isolation"/>: the one isolation tier the team's sandboxes may
/// run on (its keys cannot ask for another); null: any. <paramref name="MaxPausedSandboxes"/>: how many paused sandboxes
/// the team may keep (they hold disk, not CPU or memory, so they do not count against the others); null: the daemon's
/// <c>--max-paused-per-team</c>.
/// </summary>
internal sealed record TeamLimits(int? MaxSandboxes, int? MaxCpus, int? MaxMemoryMB, string? Isolation = null, int? MaxPausedSandboxes = null)
{
    public static TeamLimits None { get; } = new(null, null, null);
}

/// <summary>A team: it owns API keys and sandboxes. Keys of an admin team may manage teams and other teams' keys.</summary>
internal sealed record TeamRecord
{
    public required string TeamId { get; init; }

    public required string Name { get; init; }

    public required bool IsAdmin { get; init; }

    public required TeamLimits Limits { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }
}

/// <summary>An API key as stored: its SHA-256 hash, never the key.</summary>
internal sealed record ApiKeyRecord
{
    public required string KeyId { get; init; }

    public required string KeyHash { get; init; }

    /// <summary>A form safe to show: the prefix and the last four characters.</summary>
    public required string KeyMask { get; init; }

    public required string TeamId { get; init; }

    public required string Name { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>Set once revoked; a revoked key authenticates nothing and is kept only as history.</summary>
    public DateTimeOffset? RevokedAt { get; init; }

    /// <summary>When it last authenticated a request, to the minute (see <c>TeamDirectory</c>).</summary>
    public DateTimeOffset? LastUsedAt { get; init; }
}

/// <summary>Teams and their keys. Implementations are safe for concurrent use.</summary>
internal interface ITeamStore
{
    Task<IReadOnlyList<TeamRecord>> ListTeamsAsync(CancellationToken cancellationToken);

    /// <summary>Adds a team; throws <see cref="DuplicateNameException"/> when its name is taken.</summary>
    Task InsertTeamAsync(TeamRecord team, CancellationToken cancellationToken);

    /// <summary>Replaces a team's name and limits; false when there is no such team. Throws <see cref="DuplicateNameException"/> on a taken name.</summary>
    Task<bool> UpdateTeamAsync(TeamRecord team, CancellationToken cancellationToken);

    /// <summary>Every key, revoked ones included, oldest first.</summary>
    Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken);

    Task AddApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken);

    /// <summary>False when the team has no such unrevoked key.</summary>
    Task<bool> RenameApiKeyAsync(string teamId, string keyId, string name, CancellationToken cancellationToken);

    /// <summary>False when the team has no such unrevoked key.</summary>
    Task<bool> RevokeApiKeyAsync(string teamId, string keyId, DateTimeOffset at, CancellationToken cancellationToken);

    Task SetApiKeyLastUsedAsync(string keyId, DateTimeOffset at, CancellationToken cancellationToken);
}

/// <summary>A team name that is already taken.</summary>
internal sealed class DuplicateNameException(string name) : Exception($"a team named '{name}' already exists")
{
    public string Name { get; } = name;
}
