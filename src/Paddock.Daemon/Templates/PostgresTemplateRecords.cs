using System.Text.Json;
using Npgsql;
using NpgsqlTypes;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Templates;

/// <summary>
/// The <c>templates</c> table in PostgreSQL. Unlike <see cref="SqliteTemplateRecords"/> it keeps no copy between
/// writes: several paddockd may share one database, and a copy could not see another daemon's writes. A read is one
/// indexed query on a pooled connection.
/// </summary>
internal sealed class PostgresTemplateRecords(PostgresStore database) : ITemplateRecords
{
    private static readonly string s_upsert = $"""
        INSERT INTO templates ({SqliteTemplateRecords.Columns})
        VALUES (@id, @team, @names, @kind, @layers, @own, @size, @created, @parent, @source, @user, @public, @env, @workdir, @start, @ready, @isolation)
        ON CONFLICT (template_id) DO UPDATE SET {string.Join(", ", SqliteTemplateRecords.Columns.Split(", ").Skip(1).Select(c => $"{c} = EXCLUDED.{c}"))};
        """;

    public async Task<IReadOnlyList<TemplateRecord>> ListAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand($"SELECT {SqliteTemplateRecords.Columns} FROM templates ORDER BY created_at, template_id;", connection);
        var found = new List<TemplateRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            found.Add(SqliteTemplateRecords.Read(reader));
        }
        return found;
    }

    public async Task<TemplateRecord?> GetAsync(string templateId, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand($"SELECT {SqliteTemplateRecords.Columns} FROM templates WHERE template_id = @id;", connection);
        command.Parameters.AddWithValue("id", templateId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? SqliteTemplateRecords.Read(reader) : null;
    }

    public async Task UpsertAsync(TemplateRecord record, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(s_upsert, connection);
        command.Parameters.AddWithValue("id", record.TemplateId);
        PostgresStore.AddNullable(command, "team", NpgsqlDbType.Text, record.TeamId);
        command.Parameters.AddWithValue("names", JsonSerializer.Serialize(record.Names.ToList(), TemplateRecordJson.Default.ListString));
        command.Parameters.AddWithValue("kind", record.Kind.ToString().ToLowerInvariant());
        command.Parameters.AddWithValue("layers", JsonSerializer.Serialize(record.Layers.ToList(), TemplateRecordJson.Default.ListString));
        PostgresStore.AddNullable(command, "own", NpgsqlDbType.Text, record.OwnLayer);
        command.Parameters.AddWithValue("size", record.SizeBytes);
        command.Parameters.AddWithValue("created", record.CreatedAt.ToUnixTimeMilliseconds());
        PostgresStore.AddNullable(command, "parent", NpgsqlDbType.Text, record.ParentId);
        PostgresStore.AddNullable(command, "source", NpgsqlDbType.Text, record.SourceSandboxId);
        PostgresStore.AddNullable(command, "user", NpgsqlDbType.Text, record.DefaultUser);
        command.Parameters.AddWithValue("public", record.Public ? 1L : 0L);
        command.Parameters.AddWithValue("env", JsonSerializer.Serialize(record.EnvVars.ToDictionary(), TemplateRecordJson.Default.DictionaryStringString));
        PostgresStore.AddNullable(command, "workdir", NpgsqlDbType.Text, record.Workdir);
        PostgresStore.AddNullable(command, "start", NpgsqlDbType.Text, record.StartCmd);
        PostgresStore.AddNullable(command, "ready", NpgsqlDbType.Text, record.ReadyCmd);
        PostgresStore.AddNullable(command, "isolation", NpgsqlDbType.Text, record.Isolation);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<bool> DeleteAsync(string templateId, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("DELETE FROM templates WHERE template_id = @id;", connection);
        command.Parameters.AddWithValue("id", templateId);
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public async Task<(string Layer, long SizeBytes)?> GetCachedLayerAsync(string cacheKey, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT layer, size_bytes FROM template_layer_cache WHERE cache_key = @key;", connection);
        command.Parameters.AddWithValue("key", cacheKey);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? (reader.GetString(0), reader.GetInt64(1)) : null;
    }

    public async Task PutCachedLayerAsync(string cacheKey, string layer, long sizeBytes, DateTimeOffset createdAt, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("""
            INSERT INTO template_layer_cache (cache_key, layer, size_bytes, created_at) VALUES (@key, @layer, @size, @at)
            ON CONFLICT (cache_key) DO UPDATE SET layer = EXCLUDED.layer, size_bytes = EXCLUDED.size_bytes, created_at = EXCLUDED.created_at;
            """, connection);
        command.Parameters.AddWithValue("key", cacheKey);
        command.Parameters.AddWithValue("layer", layer);
        command.Parameters.AddWithValue("size", sizeBytes);
        command.Parameters.AddWithValue("at", createdAt.ToUnixTimeMilliseconds());
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
