using System.Data.Common;
using System.Text.Json;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Templates;

/// <summary>
/// The <c>templates</c> and <c>template_layer_cache</c> tables (schema step 3), in SQL that both engines take. Every
/// create resolves its template through the whole table, so where this daemon is the database's only writer
/// (<paramref name="soleWriter"/>: SQLite) the rows are kept in memory between writes, and every write goes through
/// here and drops the copy. Where several paddockd may share the database (PostgreSQL) a copy could not see another
/// daemon's writes, so every read is one indexed query on a pooled connection.
/// </summary>
internal sealed class TemplateRecords(IStoreConnections database, bool soleWriter) : ITemplateRecords
{
    private const string Columns = "template_id, team_id, names, kind, layers, own_layer, size_bytes, created_at, parent_id, source_sandbox_id, default_user, public, env, workdir, start_cmd, ready_cmd, isolation";

    private static readonly string s_upsert = $"""
        INSERT INTO templates ({Columns})
        VALUES (@id, @team, @names, @kind, @layers, @own, @size, @created, @parent, @source, @user, @public, @env, @workdir, @start, @ready, @isolation)
        ON CONFLICT (template_id) DO UPDATE SET {string.Join(", ", Columns.Split(", ").Skip(1).Select(c => $"{c} = EXCLUDED.{c}"))};
        """;

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
        await using var connection = await database.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command($"SELECT {Columns} FROM templates ORDER BY created_at, template_id;");
        var found = new List<TemplateRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            found.Add(Read(reader));
        }
        if (soleWriter && Interlocked.Read(ref _writes) == writes)
        {
            Interlocked.CompareExchange(ref _all, found, null);
        }
        return found;
    }

    public async Task<TemplateRecord?> GetAsync(string templateId, CancellationToken cancellationToken)
    {
        if (soleWriter)
        {
            return (await ListAsync(cancellationToken)).FirstOrDefault(t => string.Equals(t.TemplateId, templateId, StringComparison.Ordinal));
        }
        await using var connection = await database.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command($"SELECT {Columns} FROM templates WHERE template_id = @id;").With("@id", templateId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Read(reader) : null;
    }

    /// <summary>Inserts or replaces the record as a whole.</summary>
    public async Task UpsertAsync(TemplateRecord record, CancellationToken cancellationToken)
    {
        Invalidate();
        try
        {
            await using var connection = await database.OpenConnectionAsync(cancellationToken);
            await using var command = connection.Command(s_upsert)
                .With("@id", record.TemplateId)
                .With("@team", record.TeamId)
                .With("@names", JsonSerializer.Serialize(record.Names.ToList(), TemplateRecordJson.Default.ListString))
                .With("@kind", record.Kind.ToString().ToLowerInvariant())
                .With("@layers", JsonSerializer.Serialize(record.Layers.ToList(), TemplateRecordJson.Default.ListString))
                .With("@own", record.OwnLayer)
                .With("@size", record.SizeBytes)
                .With("@created", record.CreatedAt.ToUnixTimeMilliseconds())
                .With("@parent", record.ParentId)
                .With("@source", record.SourceSandboxId)
                .With("@user", record.DefaultUser)
                .With("@public", record.Public ? 1L : 0L)
                .With("@env", JsonSerializer.Serialize(record.EnvVars.ToDictionary(), TemplateRecordJson.Default.DictionaryStringString))
                .With("@workdir", record.Workdir)
                .With("@start", record.StartCmd)
                .With("@ready", record.ReadyCmd)
                .With("@isolation", record.Isolation);
            await command.ExecuteNonQueryAsync(cancellationToken);
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
            await using var connection = await database.OpenConnectionAsync(cancellationToken);
            await using var command = connection.Command("DELETE FROM templates WHERE template_id = @id;").With("@id", templateId);
            return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
        }
        finally
        {
            Invalidate();
        }
    }

    private void Invalidate()
    {
        Interlocked.Increment(ref _writes);
        Volatile.Write(ref _all, null);
    }

    /// <summary>One row of <see cref="Columns"/>.</summary>
    private static TemplateRecord Read(DbDataReader r) => new()
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
        await using var connection = await database.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("SELECT layer, size_bytes FROM template_layer_cache WHERE cache_key = @key;").With("@key", cacheKey);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? (reader.GetString(0), reader.GetInt64(1)) : null;
    }

    public async Task PutCachedLayerAsync(string cacheKey, string layer, long sizeBytes, DateTimeOffset createdAt, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("""
            INSERT INTO template_layer_cache (cache_key, layer, size_bytes, created_at) VALUES (@key, @layer, @size, @at)
            ON CONFLICT (cache_key) DO UPDATE SET layer = EXCLUDED.layer, size_bytes = EXCLUDED.size_bytes, created_at = EXCLUDED.created_at;
            """)
            .With("@key", cacheKey)
            .With("@layer", layer)
            .With("@size", sizeBytes)
            .With("@at", createdAt.ToUnixTimeMilliseconds());
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
