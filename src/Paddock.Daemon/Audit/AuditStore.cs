using System.Globalization;
using System.Text.Json;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Audit;

/// <summary>An event on its way to the store, with whose sandbox and team it is.</summary>
internal readonly record struct PendingAuditEvent(string SandboxId, string TeamId, AuditEvent Event);

/// <summary>One sandbox's trail as the store has it: the events asked for and the bound's bookkeeping.</summary>
internal sealed record AuditTrailRead(string? TeamId, IReadOnlyList<AuditEvent> Events, long Dropped, long? DroppedAfterSeq);

/// <summary>
/// The audit trail in the state database (schema step 5), in SQL that both engines take (<see cref="IStoreConnections"/>).
/// Events are written in batches, one transaction each, by <see cref="AuditTrail"/>'s single writer, as multi-row
/// inserts (one round trip per <see cref="RowsPerInsert"/> events on PostgreSQL). The bound per sandbox keeps the first
/// half (how the sandbox was set up) and the newest half (what it did last) and deletes the events between, counting
/// them in audit_counts, so a flood of commands can neither fill the disk nor push the start of the trail out.
/// </summary>
internal sealed class AuditStore(IStoreConnections store) : IAuditStore
{
    // Five parameters a row: far below SQLite's 32766 and PostgreSQL's 65535 per statement.
    private const int RowsPerInsert = 256;

    /// <summary>Writes a batch in one transaction and applies the bound to every sandbox it touched; returns the events dropped by the bound.</summary>
    public async Task<long> AppendAsync(IReadOnlyList<PendingAuditEvent> batch, IReadOnlyDictionary<string, long> lostBefore, int maxPerSandbox, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var perSandbox = new Dictionary<string, (int Count, long LastAt)>(StringComparer.Ordinal);
        foreach (var chunk in batch.Chunk(RowsPerInsert))
        {
            await using var insert = connection.Command("", transaction);
            var rows = new List<string>(chunk.Length);
            foreach (var (pending, i) in chunk.Select((p, i) => (p, i)))
            {
                var ms = pending.Event.At.ToUnixTimeMilliseconds();
                var n = i.ToString(CultureInfo.InvariantCulture);
                rows.Add($"(@id{n}, @team{n}, @at{n}, @kind{n}, @data{n})");
                insert.With("@id" + n, pending.SandboxId)
                    .With("@team" + n, pending.TeamId)
                    .With("@at" + n, ms)
                    .With("@kind" + n, pending.Event.Kind)
                    .With("@data" + n, JsonSerializer.Serialize(pending.Event, AuditJsonContext.Default.AuditEvent));
                perSandbox[pending.SandboxId] = perSandbox.TryGetValue(pending.SandboxId, out var c) ? (c.Count + 1, ms) : (1, ms);
            }
            insert.CommandText = "INSERT INTO audit_events (sandbox_id, team_id, at, kind, data) VALUES " + string.Join(", ", rows) + ";";
            await insert.ExecuteNonQueryAsync(cancellationToken);
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
            // RETURNING: SQLite has had it since 3.35, PostgreSQL always.
            await using var command = connection.Command("""
                INSERT INTO audit_counts (sandbox_id, kept, dropped, head_end, last_at) VALUES (@id, @n, @lost, NULL, @at)
                ON CONFLICT (sandbox_id) DO UPDATE SET kept = audit_counts.kept + @n, dropped = audit_counts.dropped + @lost,
                    last_at = CASE WHEN audit_counts.last_at > @at THEN audit_counts.last_at ELSE @at END
                RETURNING kept, head_end;
                """, transaction)
                .With("@id", sandboxId)
                .With("@n", (long)count)
                .With("@lost", lostBefore.TryGetValue(sandboxId, out var l) ? l : 0L)
                .With("@at", lastAt);
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
            command.With("@id", sandboxId);
            if (headEnd is null)
            {
                command.CommandText = "SELECT seq FROM audit_events WHERE sandbox_id = @id ORDER BY seq LIMIT 1 OFFSET @skip;";
                command.With("@skip", (long)(head - 1));
                headEnd = Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
                command.Parameters.Clear();
                command.With("@id", sandboxId);
            }
            command.With("@headEnd", headEnd.Value).With("@tail", (long)tail);
            command.CommandText = """
                DELETE FROM audit_events WHERE sandbox_id = @id AND seq > @headEnd AND seq <=
                    (SELECT seq FROM audit_events WHERE sandbox_id = @id ORDER BY seq DESC LIMIT 1 OFFSET @tail);
                """;
            var deleted = await command.ExecuteNonQueryAsync(cancellationToken);
            command.With("@deleted", (long)deleted);
            command.CommandText = "UPDATE audit_counts SET kept = kept - @deleted, dropped = dropped + @deleted, head_end = @headEnd WHERE sandbox_id = @id;";
            await command.ExecuteNonQueryAsync(cancellationToken);
            droppedByBound += deleted;
        }
        await transaction.CommitAsync(cancellationToken);
        return droppedByBound;
    }

    /// <summary>Events of one sandbox with seq above <paramref name="after"/> and time in [from, to], oldest first, at most <paramref name="limit"/>.</summary>
    public async Task<AuditTrailRead> ReadAsync(string sandboxId, long after, DateTimeOffset? from, DateTimeOffset? to, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("""
            SELECT seq, data FROM audit_events WHERE sandbox_id = @id AND seq > @after AND at >= @from AND at <= @to ORDER BY seq LIMIT @limit;
            """)
            .With("@id", sandboxId)
            .With("@after", after)
            .With("@from", from?.ToUnixTimeMilliseconds() ?? long.MinValue)
            .With("@to", to?.ToUnixTimeMilliseconds() ?? long.MaxValue)
            .With("@limit", (long)limit);
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

    /// <summary>How many events of the sandbox the store holds (tests and the bound's check).</summary>
    public async Task<long> CountAsync(string sandboxId, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("SELECT count(*) FROM audit_events WHERE sandbox_id = @id;").With("@id", sandboxId);
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
    }

    /// <summary>Deletes events older than <paramref name="before"/>, and the bookkeeping of trails with nothing newer; returns the events deleted.</summary>
    public async Task<int> PurgeAsync(DateTimeOffset before, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("DELETE FROM audit_events WHERE at < @cutoff;").With("@cutoff", before.ToUnixTimeMilliseconds());
        var deleted = await command.ExecuteNonQueryAsync(cancellationToken);
        command.CommandText = "DELETE FROM audit_counts WHERE last_at < @cutoff;";
        await command.ExecuteNonQueryAsync(cancellationToken);
        if (deleted > 0)
        {
            // A trail still being written lost its oldest events to retention: its count must not make the bound cut early.
            command.CommandText = "UPDATE audit_counts SET kept = (SELECT count(*) FROM audit_events e WHERE e.sandbox_id = audit_counts.sandbox_id);";
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        return deleted;
    }
}
