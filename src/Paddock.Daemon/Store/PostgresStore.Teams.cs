using Npgsql;
using NpgsqlTypes;

namespace Paddock.Daemon.Store;

// Teams and API keys (schema step 2), as in SqliteStore.Teams.cs.
internal sealed partial class PostgresStore
{
    public async Task<IReadOnlyList<TeamRecord>> ListTeamsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            "SELECT team_id, name, is_admin, max_sandboxes, max_cpus, max_memory_mb, created_at, isolation, max_paused_sandboxes FROM teams ORDER BY created_at, team_id;", connection);
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
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("""
            INSERT INTO teams (team_id, name, is_admin, max_sandboxes, max_cpus, max_memory_mb, isolation, created_at, max_paused_sandboxes)
            VALUES (@id, @name, @admin, @sandboxes, @cpus, @memory, @isolation, @at, @paused);
            """, connection);
        BindTeam(command, team);
        command.Parameters.AddWithValue("admin", team.IsAdmin ? 1L : 0L);
        command.Parameters.AddWithValue("at", team.CreatedAt.ToUnixTimeMilliseconds());
        try
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation)
        {
            throw new DuplicateNameException(team.Name);
        }
    }

    public async Task<bool> UpdateTeamAsync(TeamRecord team, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("""
            UPDATE teams SET name = @name, max_sandboxes = @sandboxes, max_cpus = @cpus, max_memory_mb = @memory,
                isolation = @isolation, max_paused_sandboxes = @paused
            WHERE team_id = @id;
            """, connection);
        BindTeam(command, team);
        try
        {
            return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation)
        {
            throw new DuplicateNameException(team.Name);
        }
    }

    public async Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            "SELECT key_id, key_hash, key_mask, team_id, name, created_at, revoked_at, last_used_at FROM api_keys ORDER BY created_at, key_id;", connection);
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
        await using var connection = await OpenAsync(cancellationToken);
        // DO NOTHING: the same key added twice (a restart with the same key file) stays one row, as SQLite's OR IGNORE.
        await using var command = new NpgsqlCommand("""
            INSERT INTO api_keys (key_hash, key_mask, created_at, key_id, team_id, name)
            VALUES (@hash, @mask, @at, @id, @team, @name)
            ON CONFLICT DO NOTHING;
            """, connection);
        command.Parameters.AddWithValue("hash", key.KeyHash);
        command.Parameters.AddWithValue("mask", key.KeyMask);
        command.Parameters.AddWithValue("at", key.CreatedAt.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("id", key.KeyId);
        command.Parameters.AddWithValue("team", key.TeamId);
        command.Parameters.AddWithValue("name", key.Name);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<bool> RenameApiKeyAsync(string teamId, string keyId, string name, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("UPDATE api_keys SET name = @name WHERE key_id = @id AND team_id = @team AND revoked_at IS NULL;", connection);
        command.Parameters.AddWithValue("name", name);
        command.Parameters.AddWithValue("id", keyId);
        command.Parameters.AddWithValue("team", teamId);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    public async Task<bool> RevokeApiKeyAsync(string teamId, string keyId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("UPDATE api_keys SET revoked_at = @at WHERE key_id = @id AND team_id = @team AND revoked_at IS NULL;", connection);
        command.Parameters.AddWithValue("at", at.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("id", keyId);
        command.Parameters.AddWithValue("team", teamId);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    public async Task SetApiKeyLastUsedAsync(string keyId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("UPDATE api_keys SET last_used_at = @at WHERE key_id = @id;", connection);
        command.Parameters.AddWithValue("at", at.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("id", keyId);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static void BindTeam(NpgsqlCommand command, TeamRecord team)
    {
        command.Parameters.AddWithValue("id", team.TeamId);
        command.Parameters.AddWithValue("name", team.Name);
        AddNullable(command, "sandboxes", NpgsqlDbType.Bigint, (long?)team.Limits.MaxSandboxes);
        AddNullable(command, "cpus", NpgsqlDbType.Bigint, (long?)team.Limits.MaxCpus);
        AddNullable(command, "memory", NpgsqlDbType.Bigint, (long?)team.Limits.MaxMemoryMB);
        AddNullable(command, "isolation", NpgsqlDbType.Text, team.Limits.Isolation);
        AddNullable(command, "paused", NpgsqlDbType.Bigint, (long?)team.Limits.MaxPausedSandboxes);
    }

    private static int? NullableInt(NpgsqlDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : checked((int)reader.GetInt64(ordinal));
}
