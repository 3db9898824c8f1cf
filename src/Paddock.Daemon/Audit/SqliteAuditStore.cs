using System.Text.Json;
using Microsoft.Data.Sqlite;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Audit;

/// <summary>An event on its way to the store, with whose sandbox and team it is.</summary>
internal readonly record struct PendingAuditEvent(string SandboxId, string TeamId, AuditEvent Event);

/// <summary>One sandbox's trail as the store has it: the events asked for and the bound's bookkeeping.</summary>
internal sealed record AuditTrailRead(string? TeamId, IReadOnlyList<AuditEvent> Events, long Dropped, long? DroppedAfterSeq);

/// <summary>
/// The audit trail in the daemon's SQLite file (schema step 4). Events are written in batches, one transaction each,
/// by <see cref="AuditTrail"/>'s single writer. The bound per sandbox keeps the first half (how the sandbox was set
/// up) and the newest half (what it did last) and deletes the events between, counting them in audit_counts, so a
/// flood of commands can neither fill the disk nor push the start of the trail out.
/// The egress guard's connection events will go through the same path (kind net.connect, fields already here).
/// </summary>
internal sealed class SqliteAuditStore(SqliteStore store) : IAuditStore
{
    /// <summary>Writes a batch in one transaction and applies the bound to every sandbox it touched; returns the events dropped by the bound.</summary>
    public async Task<long> AppendAsync(IReadOnlyList<PendingAuditEvent> batch, IReadOnlyDictionary<string, long> lostBefore, int maxPerSandbox, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenAsync(cancellationToken);
        await using var transaction = (SqliteTransaction)await connection.BeginTransactionAsync(cancellationToken);
        var perSandbox = new Dictionary<string, (int Count, long LastAt)>(StringComparer.Ordinal);
        await using (var insert = connection.CreateCommand())
        {
            insert.Transaction = transaction;
            insert.CommandText = "INSERT INTO audit_events (sandbox_id, team_id, at, kind, data) VALUES ($id, $team, $at, $kind, $data);";
            var id = insert.Parameters.Add("$id", SqliteType.Text);
            var team = insert.Parameters.Add("$team", SqliteType.Text);
            var at = insert.Parameters.Add("$at", SqliteType.Integer);
            var kind = insert.Parameters.Add("$kind", SqliteType.Text);
            var data = insert.Parameters.Add("$data", SqliteType.Text);
            insert.Prepare();
            foreach (var pending in batch)
            {
                var ms = pending.Event.At.ToUnixTimeMilliseconds();
                id.Value = pending.SandboxId;
                team.Value = pending.TeamId;
                at.Value = ms;
                kind.Value = pending.Event.Kind;
                data.Value = JsonSerializer.Serialize(pending.Event, AuditJsonContext.Default.AuditEvent);
                await insert.ExecuteNonQueryAsync(cancellationToken);
                perSandbox[pending.SandboxId] = perSandbox.TryGetValue(pending.SandboxId, out var c) ? (c.Count + 1, ms) : (1, ms);
            }
        }
        foreach (var (sandboxId, lost) in lostBefore)
        {
            if (!perSandbox.ContainsKey(sandboxId))
            {
                perSandbox[sandboxId] = (0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            }
        }
        long droppedByBound = 0;
        foreach (var (sandboxId, (count, lastAt)) in perSandbox)
        {
            await using var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.Parameters.AddWithValue("$id", sandboxId);
            command.Parameters.AddWithValue("$n", count);
            command.Parameters.AddWithValue("$lost", lostBefore.TryGetValue(sandboxId, out var l) ? l : 0L);
            command.Parameters.AddWithValue("$at", lastAt);
            command.CommandText = """
                INSERT INTO audit_counts (sandbox_id, kept, dropped, head_end, last_at) VALUES ($id, $n, $lost, NULL, $at)
                ON CONFLICT (sandbox_id) DO UPDATE SET kept = kept + $n, dropped = dropped + $lost, last_at = max(last_at, $at);
                SELECT kept, head_end FROM audit_counts WHERE sandbox_id = $id;
                """;
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
            command.Parameters.AddWithValue("$head", head);
            command.Parameters.AddWithValue("$tail", tail);
            if (headEnd is null)
            {
                command.CommandText = "SELECT seq FROM audit_events WHERE sandbox_id = $id ORDER BY seq LIMIT 1 OFFSET $head - 1;";
                headEnd = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
            }
            command.Parameters.AddWithValue("$headEnd", headEnd.Value);
            command.CommandText = """
                DELETE FROM audit_events WHERE sandbox_id = $id AND seq > $headEnd AND seq <=
                    (SELECT seq FROM audit_events WHERE sandbox_id = $id ORDER BY seq DESC LIMIT 1 OFFSET $tail);
                """;
            var deleted = await command.ExecuteNonQueryAsync(cancellationToken);
            command.Parameters.AddWithValue("$deleted", deleted);
            command.CommandText = "UPDATE audit_counts SET kept = kept - $deleted, dropped = dropped + $deleted, head_end = $headEnd WHERE sandbox_id = $id;";
            await command.ExecuteNonQueryAsync(cancellationToken);
            droppedByBound += deleted;
        }
        await transaction.CommitAsync(cancellationToken);
        return droppedByBound;
    }

    /// <summary>Events of one sandbox with seq above <paramref name="after"/> and time in [from, to], oldest first, at most <paramref name="limit"/>.</summary>
    public async Task<AuditTrailRead> ReadAsync(string sandboxId, long after, DateTimeOffset? from, DateTimeOffset? to, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.Parameters.AddWithValue("$id", sandboxId);
        command.Parameters.AddWithValue("$after", after);
        command.Parameters.AddWithValue("$from", from?.ToUnixTimeMilliseconds() ?? long.MinValue);
        command.Parameters.AddWithValue("$to", to?.ToUnixTimeMilliseconds() ?? long.MaxValue);
        command.Parameters.AddWithValue("$limit", limit);
        command.CommandText = """
            SELECT seq, data FROM audit_events WHERE sandbox_id = $id AND seq > $after AND at >= $from AND at <= $to ORDER BY seq LIMIT $limit;
            """;
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
        command.CommandText = "SELECT team_id FROM audit_events WHERE sandbox_id = $id LIMIT 1;";
        var team = await command.ExecuteScalarAsync(cancellationToken) as string;
        command.CommandText = "SELECT dropped, head_end FROM audit_counts WHERE sandbox_id = $id;";
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
        await using var connection = await store.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM audit_events WHERE sandbox_id = $id;";
        command.Parameters.AddWithValue("$id", sandboxId);
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>Deletes events older than <paramref name="before"/>, and the bookkeeping of trails with nothing newer; returns the events deleted.</summary>
    public async Task<int> PurgeAsync(DateTimeOffset before, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.Parameters.AddWithValue("$cutoff", before.ToUnixTimeMilliseconds());
        command.CommandText = "DELETE FROM audit_events WHERE at < $cutoff;";
        var deleted = await command.ExecuteNonQueryAsync(cancellationToken);
        command.CommandText = "DELETE FROM audit_counts WHERE last_at < $cutoff;";
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
