using System.Data.Common;

namespace Paddock.Daemon.Store;

// Teams and API keys (schema step 2).
internal abstract partial class StateStore
{
    public async Task<IReadOnlyList<TeamRecord>> ListTeamsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT team_id, name, is_admin, max_sandboxes, max_cpus, max_memory_mb, created_at, isolation, max_paused_sandboxes FROM teams ORDER BY created_at, team_id;";
        var teams = new List<TeamRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            teams.Add(new TeamRecord
            {
                TeamId = reader.GetString(0),
                Name = reader.GetString(1),
                IsAdmin = reader.GetInt64(2) != 0,
                Limits = new TeamLimits(NullableInt(reader, 3), NullableInt(reader, 4), NullableInt(reader, 5), reader.IsDBNull(7) ? null : reader.GetString(7), NullableInt(reader, 8)),
                CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(6)),
            });
        }
        return teams;
    }

    public async Task InsertTeamAsync(TeamRecord team, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO teams (team_id, name, is_admin, max_sandboxes, max_cpus, max_memory_mb, isolation, created_at, max_paused_sandboxes)
            VALUES (@id, @name, @admin, @sandboxes, @cpus, @memory, @isolation, @at, @paused);
            """;
        BindTeam(command, team);
        command.With("@admin", team.IsAdmin ? 1L : 0L);
        command.With("@at", team.CreatedAt.ToUnixTimeMilliseconds());
        try
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (DbException ex) when (IsUniqueViolation(ex))
        {
            throw new DuplicateNameException(team.Name);
        }
    }

    public async Task<bool> UpdateTeamAsync(TeamRecord team, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = """
            UPDATE teams SET name = @name, max_sandboxes = @sandboxes, max_cpus = @cpus, max_memory_mb = @memory,
                isolation = @isolation, max_paused_sandboxes = @paused
            WHERE team_id = @id;
            """;
        BindTeam(command, team);
        try
        {
            return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
        }
        catch (DbException ex) when (IsUniqueViolation(ex))
        {
            throw new DuplicateNameException(team.Name);
        }
    }

    public async Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT key_id, key_hash, key_mask, team_id, name, created_at, revoked_at, last_used_at FROM api_keys ORDER BY created_at, key_id;";
        var keys = new List<ApiKeyRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            keys.Add(new ApiKeyRecord
            {
                KeyId = reader.GetString(0),
                KeyHash = reader.GetString(1),
                KeyMask = reader.GetString(2),
                TeamId = reader.GetString(3),
                Name = reader.GetString(4),
                CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(5)),
                RevokedAt = reader.IsDBNull(6) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(6)),
                LastUsedAt = reader.IsDBNull(7) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(7)),
            });
        }
        return keys;
    }

    public async Task AddApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        // DO NOTHING: the same key added twice (a restart with the same key file) stays one row.
        command.CommandText = """
            INSERT INTO api_keys (key_hash, key_mask, created_at, key_id, team_id, name)
            VALUES (@hash, @mask, @at, @id, @team, @name)
            ON CONFLICT DO NOTHING;
            """;
        command.With("@hash", key.KeyHash);
        command.With("@mask", key.KeyMask);
        command.With("@at", key.CreatedAt.ToUnixTimeMilliseconds());
        command.With("@id", key.KeyId);
        command.With("@team", key.TeamId);
        command.With("@name", key.Name);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<bool> RenameApiKeyAsync(string teamId, string keyId, string name, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "UPDATE api_keys SET name = @name WHERE key_id = @id AND team_id = @team AND revoked_at IS NULL;";
        command.With("@name", name);
        command.With("@id", keyId);
        command.With("@team", teamId);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    public async Task<bool> RevokeApiKeyAsync(string teamId, string keyId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "UPDATE api_keys SET revoked_at = @at WHERE key_id = @id AND team_id = @team AND revoked_at IS NULL;";
        command.With("@at", at.ToUnixTimeMilliseconds());
        command.With("@id", keyId);
        command.With("@team", teamId);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    public async Task SetApiKeyLastUsedAsync(string keyId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "UPDATE api_keys SET last_used_at = @at WHERE key_id = @id;";
        command.With("@at", at.ToUnixTimeMilliseconds());
        command.With("@id", keyId);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static void BindTeam(DbCommand command, TeamRecord team)
    {
        command.With("@id", team.TeamId);
        command.With("@name", team.Name);
        command.With("@sandboxes", (long?)team.Limits.MaxSandboxes);
        command.With("@cpus", (long?)team.Limits.MaxCpus);
        command.With("@memory", (long?)team.Limits.MaxMemoryMB);
        command.With("@isolation", team.Limits.Isolation);
        command.With("@paused", (long?)team.Limits.MaxPausedSandboxes);
    }

    private static int? NullableInt(DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : checked((int)reader.GetInt64(ordinal));
}
