using System.Collections.Concurrent;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Teams;

/// <summary>
/// Teams and their API keys: every change goes to the store first, then the in-memory view (the teams here, the keys in
/// <see cref="ApiKeyAuthenticator"/>) is reloaded from the store before the change returns. Changes are serialized,
/// so the last reload always reflects every change that has returned; a revoked key is refused by the next request.
/// Daemons that share the store (cluster mode) are told through <see cref="ITeamChangeFanout"/> before the change
/// returns, and reload periodically besides (Cluster/ClusterTeamRefresh) for a node that missed that call.
/// </summary>
internal sealed class TeamDirectory(ITeamStore store, ApiKeyAuthenticator authenticator, DaemonOptions options, TimeProvider time, ITeamChangeFanout fanout, ILogger<TeamDirectory> logger)
{
    /// <summary>How stale a key's "last used" may be: writing it on every request would put a write on every read.</summary>
    public static readonly TimeSpan LastUsedResolution = TimeSpan.FromMinutes(1);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ConcurrentDictionary<string, long> _lastUsedWritten = new(StringComparer.Ordinal);
    private volatile IReadOnlyDictionary<string, TeamRecord> _teams = new Dictionary<string, TeamRecord>();

    /// <summary>
    /// Loads teams and keys from the store: at start, when another node says it changed them, and periodically in
    /// cluster mode (every change through this daemon reloads by itself). A failed read keeps the loaded view.
    /// </summary>
    public async Task ReloadAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            await ReloadLockedAsync(cancellationToken);
        }
        finally
        {
            _gate.Release();
        }
    }

    public IReadOnlyCollection<TeamRecord> Teams => [.. _teams.Values.OrderBy(t => t.CreatedAt).ThenBy(t => t.TeamId, StringComparer.Ordinal)];

    public TeamRecord? Find(string teamId) => _teams.GetValueOrDefault(teamId);

    /// <summary>The limits of a team; none for a team that does not exist (a key's team is never deleted).</summary>
    public TeamLimits LimitsOf(string teamId) => Find(teamId)?.Limits ?? TeamLimits.None;

    public Task<TeamRecord> CreateTeamAsync(string name, TeamLimits limits, CancellationToken cancellationToken) =>
        ChangeAsync(async ct =>
        {
            var team = new TeamRecord { TeamId = Guid.NewGuid().ToString(), Name = name, IsAdmin = false, Limits = limits, CreatedAt = Now() };
            await store.InsertTeamAsync(team, ct);
            TeamsLog.TeamCreated(logger, team.TeamId, name);
            return team;
        }, cancellationToken);

    /// <summary>Renames a team and changes its limits; null when there is no such team.</summary>
    public Task<TeamRecord?> UpdateTeamAsync(string teamId, string? name, Func<TeamLimits, TeamLimits> limits, CancellationToken cancellationToken) =>
        ChangeAsync(async ct =>
        {
            if (Find(teamId) is not { } current)
            {
                return null;
            }
            var updated = current with { Name = name ?? current.Name, Limits = limits(current.Limits) };
            if (!await store.UpdateTeamAsync(updated, ct))
            {
                return null;
            }
            TeamsLog.TeamChanged(logger, teamId, updated.Name, updated.Limits.ToString());
            return updated;
        }, cancellationToken);

    /// <summary>A team's unrevoked keys, oldest first.</summary>
    public async Task<IReadOnlyList<ApiKeyRecord>> ListKeysAsync(string teamId, CancellationToken cancellationToken) =>
        [.. (await store.ListApiKeysAsync(cancellationToken)).Where(k => k.TeamId == teamId && k.RevokedAt is null)];

    /// <summary>Makes a key for a team; the key itself is returned once and never stored.</summary>
    public Task<(ApiKeyRecord Record, string Key)> CreateKeyAsync(string teamId, string name, CancellationToken cancellationToken) =>
        ChangeAsync(async ct =>
        {
            if (Find(teamId) is null)
            {
                throw new UnknownTeamException(teamId);
            }
            var key = ApiKeys.Generate();
            var record = new ApiKeyRecord
            {
                KeyId = Guid.NewGuid().ToString(),
                KeyHash = ApiKeys.Hash(key),
                KeyMask = ApiKeys.Mask(key),
                TeamId = teamId,
                Name = name,
                CreatedAt = Now(),
            };
            await store.AddApiKeyAsync(record, ct);
            TeamsLog.KeyCreated(logger, record.KeyId, record.KeyMask, teamId);
            return (record, key);
        }, cancellationToken);

    public Task<bool> RenameKeyAsync(string teamId, string keyId, string name, CancellationToken cancellationToken) =>
        ChangeAsync(ct => store.RenameApiKeyAsync(teamId, keyId, name, ct), cancellationToken);

    /// <summary>
    /// Revokes a key; false when the team has no such key. The last key of an admin team cannot go unless
    /// <c>PADDOCK_API_KEY</c> is set: nobody could manage teams any more.
    /// </summary>
    public Task<bool> RevokeKeyAsync(string teamId, string keyId, CancellationToken cancellationToken) =>
        ChangeAsync(async ct =>
        {
            var keys = (await store.ListApiKeysAsync(ct)).Where(k => k.TeamId == teamId && k.RevokedAt is null).ToList();
            if (!keys.Any(k => k.KeyId == keyId))
            {
                return false;
            }
            if (keys.Count == 1 && Find(teamId) is { IsAdmin: true } team && string.IsNullOrEmpty(options.ExtraApiKey))
            {
                throw new TeamConflictException(
                    $"key '{keyId}' is the last key of the admin team '{team.Name}': create another key first, or nobody could manage teams");
            }
            var revoked = await store.RevokeApiKeyAsync(teamId, keyId, Now(), ct);
            if (revoked)
            {
                TeamsLog.KeyRevoked(logger, keyId, teamId);
            }
            return revoked;
        }, cancellationToken);

    /// <summary>Records that a stored key authenticated a request, at most once per <see cref="LastUsedResolution"/> per key.</summary>
    public async Task NoteUsedAsync(Caller caller)
    {
        if (caller.KeyId is not { } keyId)
        {
            return;
        }
        var now = time.GetUtcNow();
        var nowMs = now.ToUnixTimeMilliseconds();
        // Written recently, or another request is writing it right now: nothing to do.
        if (_lastUsedWritten.TryGetValue(keyId, out var last))
        {
            if (nowMs - last < LastUsedResolution.TotalMilliseconds || !_lastUsedWritten.TryUpdate(keyId, nowMs, last))
            {
                return;
            }
        }
        else if (!_lastUsedWritten.TryAdd(keyId, nowMs))
        {
            return;
        }
        try
        {
            await store.SetApiKeyLastUsedAsync(keyId, now, CancellationToken.None);
        }
        catch (Exception ex) when (ex is Microsoft.Data.Sqlite.SqliteException or Npgsql.NpgsqlException or IOException)
        {
            // Bookkeeping only: a full disk or a busy database must not turn an authenticated request into an error.
            TeamsLog.LastUsedFailed(logger, keyId, ex);
        }
    }

    private async Task<T> ChangeAsync<T>(Func<CancellationToken, Task<T>> change, CancellationToken cancellationToken)
    {
        T result;
        await _gate.WaitAsync(cancellationToken);
        try
        {
            result = await change(cancellationToken);
            // Not the request's token: a change that reached the store must reach the in-memory view too.
            await ReloadLockedAsync(CancellationToken.None);
        }
        finally
        {
            _gate.Release();
        }
        // Outside the gate: another node may be telling this one about its own change at the same time, and its
        // reload here waits for the gate; holding it while waiting for that node would stall both until the bound.
        // Not the request's token either, for the same reason as the reload; the fanout bounds each node's wait.
        await fanout.NotifyAsync(CancellationToken.None);
        return result;
    }

    private async Task ReloadLockedAsync(CancellationToken cancellationToken)
    {
        var teams = await store.ListTeamsAsync(cancellationToken);
        var keys = await store.ListApiKeysAsync(cancellationToken);
        _teams = teams.ToDictionary(t => t.TeamId, StringComparer.Ordinal);
        authenticator.Load(keys, teams, options.ExtraApiKey);
    }

    private DateTimeOffset Now() => DateTimeOffset.FromUnixTimeMilliseconds(time.GetUtcNow().ToUnixTimeMilliseconds());
}

/// <summary>No team has this id: the API's 404.</summary>
internal sealed class UnknownTeamException(string teamId) : Exception($"team '{teamId}' not found")
{
    public string TeamId { get; } = teamId;
}

/// <summary>The change would leave the teams in a state that cannot be (the API's 409).</summary>
internal sealed class TeamConflictException(string message) : Exception(message);
