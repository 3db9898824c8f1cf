using System.Text.Json;
using Microsoft.Data.Sqlite;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Templates;

/// <summary>
/// The <c>templates</c> table (schema step 3) in the daemon's SQLite database. Every create resolves its template
/// through the whole table, so the rows are kept in memory between writes: this daemon is the database's only writer,
/// and every write goes through here and drops the copy.
/// </summary>
internal sealed class SqliteTemplateRecords(SqliteStore database) : ITemplateRecords
{
    internal const string Columns = "template_id, team_id, names, kind, layers, own_layer, size_bytes, created_at, parent_id, source_sandbox_id, default_user, public, env, workdir, start_cmd, ready_cmd, isolation";

    private IReadOnlyList<TemplateRecord>? _all;

    // Bumped before and after every write: a read that overlapped one does not keep what it read.
    private long _writes;

    public async Task<IReadOnlyList<TemplateRecord>> ListAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _all) is { } all)
        {
            return all;
        }
        var writes = Interlocked.Read(ref _writes);
        var found = await ReadAllAsync(cancellationToken);
        if (Interlocked.Read(ref _writes) == writes)
        {
            Interlocked.CompareExchange(ref _all, found, null);
        }
        return found;
    }

    public async Task<TemplateRecord?> GetAsync(string templateId, CancellationToken cancellationToken) =>
        (await ListAsync(cancellationToken)).FirstOrDefault(t => string.Equals(t.TemplateId, templateId, StringComparison.Ordinal));

    private void Invalidate()
    {
        Interlocked.Increment(ref _writes);
        Volatile.Write(ref _all, null);
    }

    private async Task<IReadOnlyList<TemplateRecord>> ReadAllAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM templates ORDER BY created_at, template_id;";
        var found = new List<TemplateRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            found.Add(Read(reader));
        }
        return found;
    }

    /// <summary>Inserts or replaces the record as a whole.</summary>
    public async Task UpsertAsync(TemplateRecord record, CancellationToken cancellationToken)
    {
        Invalidate();
        try
        {
            await WriteAsync(record, cancellationToken);
        }
        finally
        {
            Invalidate();
        }
    }

    /// <summary>Deletes the record; false when there was none.</summary>
    public async Task<bool> DeleteAsync(string templateId, CancellationToken cancellationToken)
    {
        Invalidate();
        try
        {
            await using var connection = await database.OpenAsync(cancellationToken);
            await using var command = connection.CreateCommand();
            command.CommandText = "DELETE FROM templates WHERE template_id = $id;";
            command.Parameters.AddWithValue("$id", templateId);
            return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
        }
        finally
        {
            Invalidate();
        }
    }

    private async Task WriteAsync(TemplateRecord record, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = $"""
            INSERT OR REPLACE INTO templates ({Columns})
            VALUES ($id, $team, $names, $kind, $layers, $own, $size, $created, $parent, $source, $user, $public, $env, $workdir, $start, $ready, $isolation);
            """;
        command.Parameters.AddWithValue("$id", record.TemplateId);
        command.Parameters.AddWithValue("$team", (object?)record.TeamId ?? DBNull.Value);
        command.Parameters.AddWithValue("$names", JsonSerializer.Serialize(record.Names.ToList(), TemplateRecordJson.Default.ListString));
        command.Parameters.AddWithValue("$kind", record.Kind.ToString().ToLowerInvariant());
        command.Parameters.AddWithValue("$layers", JsonSerializer.Serialize(record.Layers.ToList(), TemplateRecordJson.Default.ListString));
        command.Parameters.AddWithValue("$own", (object?)record.OwnLayer ?? DBNull.Value);
        command.Parameters.AddWithValue("$size", record.SizeBytes);
        command.Parameters.AddWithValue("$created", record.CreatedAt.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("$parent", (object?)record.ParentId ?? DBNull.Value);
        command.Parameters.AddWithValue("$source", (object?)record.SourceSandboxId ?? DBNull.Value);
        command.Parameters.AddWithValue("$user", (object?)record.DefaultUser ?? DBNull.Value);
        command.Parameters.AddWithValue("$public", record.Public ? 1 : 0);
        command.Parameters.AddWithValue("$env", JsonSerializer.Serialize(record.EnvVars.ToDictionary(), TemplateRecordJson.Default.DictionaryStringString));
        command.Parameters.AddWithValue("$workdir", (object?)record.Workdir ?? DBNull.Value);
        command.Parameters.AddWithValue("$start", (object?)record.StartCmd ?? DBNull.Value);
        command.Parameters.AddWithValue("$ready", (object?)record.ReadyCmd ?? DBNull.Value);
        command.Parameters.AddWithValue("$isolation", (object?)record.Isolation ?? DBNull.Value);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>One row of <see cref="Columns"/>; PostgresTemplateRecords reads with it too (the columns are the same there).</summary>
    internal static TemplateRecord Read(System.Data.Common.DbDataReader r) => new()
    {
        TemplateId = r.GetString(0),
        TeamId = r.IsDBNull(1) ? null : r.GetString(1),
        Names = JsonSerializer.Deserialize(r.GetString(2), TemplateRecordJson.Default.ListString) ?? [],
        Kind = r.GetString(3) switch
        {
            "builtin" => TemplateKind.Builtin,
            "snapshot" => TemplateKind.Snapshot,
            "build" => TemplateKind.Build,
            "image" => TemplateKind.Image,
            var other => throw new InvalidDataException($"unknown template kind '{other}' in the database"),
        },
        Layers = JsonSerializer.Deserialize(r.GetString(4), TemplateRecordJson.Default.ListString) ?? [],
        OwnLayer = r.IsDBNull(5) ? null : r.GetString(5),
        SizeBytes = r.GetInt64(6),
        CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(7)),
        ParentId = r.IsDBNull(8) ? null : r.GetString(8),
        SourceSandboxId = r.IsDBNull(9) ? null : r.GetString(9),
        DefaultUser = r.IsDBNull(10) ? null : r.GetString(10),
        Public = r.GetInt64(11) != 0,
        EnvVars = r.IsDBNull(12) ? new Dictionary<string, string>() : JsonSerializer.Deserialize(r.GetString(12), TemplateRecordJson.Default.DictionaryStringString) ?? [],
        Workdir = r.IsDBNull(13) ? null : r.GetString(13),
        StartCmd = r.IsDBNull(14) ? null : r.GetString(14),
        ReadyCmd = r.IsDBNull(15) ? null : r.GetString(15),
        Isolation = r.IsDBNull(16) ? null : r.GetString(16),
    };

    /// <summary>The cached layer of a build step (keyed by the step and everything before it), or null.</summary>
    public async Task<(string Layer, long SizeBytes)?> GetCachedLayerAsync(string cacheKey, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT layer, size_bytes FROM template_layer_cache WHERE cache_key = $key;";
        command.Parameters.AddWithValue("$key", cacheKey);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? (reader.GetString(0), reader.GetInt64(1)) : null;
    }

    public async Task PutCachedLayerAsync(string cacheKey, string layer, long sizeBytes, DateTimeOffset createdAt, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "INSERT OR REPLACE INTO template_layer_cache (cache_key, layer, size_bytes, created_at) VALUES ($key, $layer, $size, $at);";
        command.Parameters.AddWithValue("$key", cacheKey);
        command.Parameters.AddWithValue("$layer", layer);
        command.Parameters.AddWithValue("$size", sizeBytes);
        command.Parameters.AddWithValue("$at", createdAt.ToUnixTimeMilliseconds());
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
