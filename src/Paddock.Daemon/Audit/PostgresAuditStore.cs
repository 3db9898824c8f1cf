using System.Text.Json;
using Npgsql;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Audit;

/// <summary>
/// The audit trail in PostgreSQL: the same tables, batches and bound as <see cref="SqliteAuditStore"/>. The batch's
/// inserts go as one Npgsql batch (one round trip) instead of a prepared statement run per event.
/// </summary>
internal sealed class PostgresAuditStore(PostgresStore store) : IAuditStore
{
    public async Task<long> AppendAsync(IReadOnlyList<PendingAuditEvent> batch, IReadOnlyDictionary<string, long> lostBefore, int maxPerSandbox, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var perSandbox = new Dictionary<string, (int Count, long LastAt)>(StringComparer.Ordinal);
        if (batch.Count > 0)
        {
            await using var inserts = new NpgsqlBatch(connection, transaction);
            foreach (var pending in batch)
            {
                var ms = pending.Event.At.ToUnixTimeMilliseconds();
                var insert = new NpgsqlBatchCommand("INSERT INTO audit_events (sandbox_id, team_id, at, kind, data) VALUES ($1, $2, $3, $4, $5);");
                insert.Parameters.Add(new NpgsqlParameter { Value = pending.SandboxId });
                insert.Parameters.Add(new NpgsqlParameter { Value = pending.TeamId });
                insert.Parameters.Add(new NpgsqlParameter { Value = ms });
                insert.Parameters.Add(new NpgsqlParameter { Value = pending.Event.Kind });
                insert.Parameters.Add(new NpgsqlParameter { Value = JsonSerializer.Serialize(pending.Event, AuditJsonContext.Default.AuditEvent) });
                inserts.BatchCommands.Add(insert);
                perSandbox[pending.SandboxId] = perSandbox.TryGetValue(pending.SandboxId, out var c) ? (c.Count + 1, ms) : (1, ms);
            }
            await inserts.ExecuteNonQueryAsync(cancellationToken);
        }
        foreach (var (sandboxId, _) in lostBefore)
        {
            if (!perSandbox.ContainsKey(sandboxId))
            {
                perSandbox[sandboxId] = (0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            }
        }
        long droppedByBound = 0;
        foreach (var (sandboxId, (count, lastAt)) in perSandbox)
        {
            await using var command = new NpgsqlCommand("""
                INSERT INTO audit_counts (sandbox_id, kept, dropped, head_end, last_at) VALUES (@id, @n, @lost, NULL, @at)
                ON CONFLICT (sandbox_id) DO UPDATE SET kept = audit_counts.kept + @n, dropped = audit_counts.dropped + @lost,
                    last_at = GREATEST(audit_counts.last_at, @at)
                RETURNING kept, head_end;
                """, connection, transaction);
            command.Parameters.AddWithValue("id", sandboxId);
            command.Parameters.AddWithValue("n", (long)count);
            command.Parameters.AddWithValue("lost", lostBefore.TryGetValue(sandboxId, out var l) ? l : 0L);
            command.Parameters.AddWithValue("at", lastAt);
            long kept;
            long? headEnd;
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            {
                await reader.ReadAsync(cancellationToken);
                kept = reader.GetInt64(0);
                headEnd = reader.IsDBNull(1) ? null : reader.GetInt64(1);
            }
            if (kept <= maxPerSandbox)
            {
                continue;
            }
            var head = maxPerSandbox / 2;
            var tail = maxPerSandbox - head;
            command.Parameters.Clear();
            command.Parameters.AddWithValue("id", sandboxId);
            if (headEnd is null)
            {
                command.CommandText = "SELECT seq FROM audit_events WHERE sandbox_id = @id ORDER BY seq LIMIT 1 OFFSET @skip;";
                command.Parameters.AddWithValue("skip", (long)(head - 1));
                headEnd = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
                command.Parameters.RemoveAt("skip");
            }
            command.Parameters.AddWithValue("headEnd", headEnd.Value);
            command.Parameters.AddWithValue("tail", (long)tail);
            command.CommandText = """
                DELETE FROM audit_events WHERE sandbox_id = @id AND seq > @headEnd AND seq <=
                    (SELECT seq FROM audit_events WHERE sandbox_id = @id ORDER BY seq DESC LIMIT 1 OFFSET @tail);
                """;
            var deleted = await command.ExecuteNonQueryAsync(cancellationToken);
            command.Parameters.AddWithValue("deleted", (long)deleted);
            command.CommandText = "UPDATE audit_counts SET kept = kept - @deleted, dropped = dropped + @deleted, head_end = @headEnd WHERE sandbox_id = @id;";
            await command.ExecuteNonQueryAsync(cancellationToken);
            droppedByBound += deleted;
        }
        await transaction.CommitAsync(cancellationToken);
        return droppedByBound;
    }

    public async Task<AuditTrailRead> ReadAsync(string sandboxId, long after, DateTimeOffset? from, DateTimeOffset? to, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("""
            SELECT seq, data FROM audit_events WHERE sandbox_id = @id AND seq > @after AND at >= @from AND at <= @to ORDER BY seq LIMIT @limit;
            """, connection);
        command.Parameters.AddWithValue("id", sandboxId);
        command.Parameters.AddWithValue("after", after);
        command.Parameters.AddWithValue("from", from?.ToUnixTimeMilliseconds() ?? long.MinValue);
        command.Parameters.AddWithValue("to", to?.ToUnixTimeMilliseconds() ?? long.MaxValue);
        command.Parameters.AddWithValue("limit", (long)limit);
        var events = new List<AuditEvent>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                var e = JsonSerializer.Deserialize(reader.GetString(1), AuditJsonContext.Default.AuditEvent)
                    ?? throw new InvalidDataException($"audit event {reader.GetInt64(0)} is null in the state database");
                events.Add(e with { Seq = reader.GetInt64(0) });
            }
        }
        command.CommandText = "SELECT team_id FROM audit_events WHERE sandbox_id = @id LIMIT 1;";
        var team = await command.ExecuteScalarAsync(cancellationToken) as string;
        command.CommandText = "SELECT dropped, head_end FROM audit_counts WHERE sandbox_id = @id;";
        long dropped = 0;
        long? headEnd = null;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            if (await reader.ReadAsync(cancellationToken))
            {
                dropped = reader.GetInt64(0);
                headEnd = reader.IsDBNull(1) ? null : reader.GetInt64(1);
            }
        }
        return new AuditTrailRead(team, events, dropped, dropped > 0 ? headEnd : null);
    }

    public async Task<long> CountAsync(string sandboxId, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT count(*) FROM audit_events WHERE sandbox_id = @id;", connection);
        command.Parameters.AddWithValue("id", sandboxId);
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    public async Task<int> PurgeAsync(DateTimeOffset before, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("DELETE FROM audit_events WHERE at < @cutoff;", connection);
        command.Parameters.AddWithValue("cutoff", before.ToUnixTimeMilliseconds());
        var deleted = await command.ExecuteNonQueryAsync(cancellationToken);
        command.CommandText = "DELETE FROM audit_counts WHERE last_at < @cutoff;";
        await command.ExecuteNonQueryAsync(cancellationToken);
        if (deleted > 0)
        {
            // As in SqliteAuditStore: a trail still being written lost its oldest events to retention.
            command.CommandText = "UPDATE audit_counts SET kept = (SELECT count(*) FROM audit_events e WHERE e.sandbox_id = audit_counts.sandbox_id);";
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        return deleted;
    }
}
