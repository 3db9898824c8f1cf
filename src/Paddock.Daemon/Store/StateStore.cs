using System.Data.Common;
using System.Globalization;
using System.Text.Json;

namespace Paddock.Daemon.Store;

/// <summary>
/// The state store's sandbox, log, team and key tables, in SQL that both engines take (see
/// <see cref="IStoreConnections"/>): <see cref="SqliteStore"/> and <see cref="PostgresStore"/> add only how a
/// connection is opened, how the schema steps are applied, and how a unique violation looks. Every value is bound as
/// a 64-bit integer or text, since PostgreSQL's columns are BIGINT (<see cref="PostgresMigrations"/>) and SQLite's
/// INTEGER holds either.
/// </summary>
internal abstract partial class StateStore(ILogger logger, string? nodeId = null) : ISandboxStore, IApiKeyStore, ITeamStore, IStoreConnections
{
    private const string SelectColumns = """
        SELECT sandbox_id, template_id, alias, runtime, state, metadata, cpu_count, memory_mb, disk_mb, max_pids,
               started_at, end_at, ended_at, end_reason, envd_access_token, traffic_access_token, allow_internet_access, auto_pause, team_id,
               auto_pause_memory, auto_resume, paused_at, paused_memory, node_id
        FROM sandboxes
        """;

    /// <summary>
    /// In cluster mode (PostgreSQL), this daemon's node id: written on every record it inserts (whatever the record
    /// says), so that recovery reconciles only its own and a dead node's records can be found. Null otherwise.
    /// </summary>
    public string? NodeId { get; } = nodeId;

    public abstract Task InitializeAsync(CancellationToken cancellationToken);

    /// <summary>An open connection; the caller disposes it (the template, volume and audit stores share it too).</summary>
    public abstract Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken);

    public abstract bool IsUniqueViolation(DbException error);

    /// <summary>
    /// Whether a command of several statements runs as one implicit transaction. Npgsql sends it as one batch that
    /// PostgreSQL runs that way, without BEGIN and COMMIT round trips of their own (measured, 300 calls on a loaded
    /// machine: p50 5.6 ms with an explicit transaction against 1.4 ms for a plain insert); Microsoft.Data.Sqlite runs
    /// the statements one by one, so an explicit transaction is needed there.
    /// </summary>
    protected abstract bool BatchesAreAtomic { get; }

    /// <summary>
    /// Applies the steps not yet in <c>schema_migrations</c> (which must exist), each in a transaction with its own row,
    /// in version order across <paramref name="sequences"/>. Each sequence owns the versions from First to Last; a
    /// database with a version in a sequence's range newer than the sequence knows is refused, with a message that
    /// names <paramref name="description"/>.
    /// </summary>
    protected async Task MigrateAsync(
        DbConnection connection, IReadOnlyList<(IReadOnlyList<(int Version, string Sql)> Steps, int First, int Last)> sequences,
        string description, string remedy, CancellationToken cancellationToken)
    {
        var applied = new HashSet<int>();
        await using (var command = connection.Command("SELECT version FROM schema_migrations;"))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                applied.Add(checked((int)reader.GetInt64(0)));
            }
        }
        foreach (var (steps, first, last) in sequences)
        {
            var known = steps.Max(s => s.Version);
            var seen = applied.Where(v => v >= first && v <= last).DefaultIfEmpty(0).Max();
            if (seen > known)
            {
                throw new InvalidOperationException(
                    $"the state database {description} is at schema version {seen}, newer than this paddockd knows ({known}); run a newer paddockd or {remedy}");
            }
        }
        var newest = applied.Count == 0 ? 0 : applied.Max();
        foreach (var (version, sql) in sequences.SelectMany(s => s.Steps).OrderBy(s => s.Version))
        {
            if (applied.Contains(version))
            {
                continue;
            }
            // Both engines' DDL is transactional: the step and its row commit together or not at all.
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            await using (var command = connection.Command(sql, transaction))
            {
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
            await using (var command = connection.Command("INSERT INTO schema_migrations (version, applied_at) VALUES (@v, @at);", transaction)
                .With("@v", (long)version)
                .With("@at", DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()))
            {
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
            await transaction.CommitAsync(cancellationToken);
            StoreLog.Migrated(logger, version);
            newest = Math.Max(newest, version);
        }
        StoreLog.Opened(logger, description, newest);
    }

    public async Task InsertAsync(SandboxRecord record, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = Bind(connection.Command("""
            INSERT INTO sandboxes (sandbox_id, template_id, alias, runtime, state, metadata, cpu_count, memory_mb, disk_mb, max_pids,
                                   started_at, end_at, ended_at, end_reason, envd_access_token, traffic_access_token, allow_internet_access, auto_pause, team_id,
                                   auto_pause_memory, auto_resume, paused_at, paused_memory, node_id)
            VALUES (@id, @template, @alias, @runtime, @state, @metadata, @cpu, @mem, @disk, @pids,
                    @started, @end, @ended, @reason, @envd, @traffic, @internet, @autopause, @team,
                    @autopausememory, @autoresume, @pausedat, @pausedmemory, @node);
            """), record).With("@node", NodeId);
        try
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (DbException ex) when (IsUniqueViolation(ex))
        {
            throw new InvalidOperationException($"a sandbox record with id '{record.SandboxId}' already exists", ex);
        }
    }

    public async Task UpdateAsync(SandboxRecord record, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = Bind(connection.Command("""
            UPDATE sandboxes SET template_id = @template, alias = @alias, runtime = @runtime, state = @state, metadata = @metadata,
                cpu_count = @cpu, memory_mb = @mem, disk_mb = @disk, max_pids = @pids, started_at = @started, end_at = @end,
                ended_at = @ended, end_reason = @reason, envd_access_token = @envd, traffic_access_token = @traffic,
                allow_internet_access = @internet, auto_pause = @autopause, team_id = @team,
                auto_pause_memory = @autopausememory, auto_resume = @autoresume, paused_at = @pausedat, paused_memory = @pausedmemory
            WHERE sandbox_id = @id;
            """), record);
        if (await command.ExecuteNonQueryAsync(cancellationToken) == 0)
        {
            throw new InvalidOperationException($"no sandbox record with id '{record.SandboxId}' to update");
        }
    }

    public async Task SetDeadlineAsync(string sandboxId, DateTimeOffset endAt, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("UPDATE sandboxes SET end_at = @end WHERE sandbox_id = @id AND state = @running;")
            .With("@id", sandboxId)
            .With("@end", endAt.ToUnixTimeMilliseconds())
            .With("@running", StateName(SandboxState.Running));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<SandboxRecord?> GetAsync(string sandboxId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command(SelectColumns + " WHERE sandbox_id = @id;").With("@id", sandboxId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Read(reader) : null;
    }

    public async Task<IReadOnlyList<SandboxRecord>> ListAsync(IReadOnlyCollection<SandboxState> states, CancellationToken cancellationToken)
    {
        if (states.Count == 0)
        {
            return [];
        }
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("");
        var names = new List<string>();
        foreach (var (state, i) in states.Distinct().Select((s, i) => (s, i)))
        {
            names.Add("@s" + i.ToString(CultureInfo.InvariantCulture));
            command.With(names[^1], StateName(state));
        }
        command.CommandText = SelectColumns + $" WHERE state IN ({string.Join(", ", names)}) ORDER BY started_at DESC, sandbox_id;";
        var list = new List<SandboxRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(Read(reader));
        }
        return list;
    }

    public async Task AppendLogAsync(string sandboxId, DateTimeOffset timestamp, SandboxLogLevel level, string message, int keepLast, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var transaction = BatchesAreAtomic ? null : await connection.BeginTransactionAsync(cancellationToken);
        await using var command = connection.Command("""
            INSERT INTO sandbox_logs (sandbox_id, at, level, message) VALUES (@id, @at, @level, @message);
            DELETE FROM sandbox_logs WHERE sandbox_id = @id AND seq <= (
                SELECT seq FROM sandbox_logs WHERE sandbox_id = @id ORDER BY seq DESC LIMIT 1 OFFSET @keep);
            """, transaction)
            .With("@id", sandboxId)
            .With("@at", timestamp.ToUnixTimeMilliseconds())
            .With("@level", LevelName(level))
            .With("@message", message)
            .With("@keep", (long)keepLast);
        await command.ExecuteNonQueryAsync(cancellationToken);
        if (transaction is not null)
        {
            await transaction.CommitAsync(cancellationToken);
        }
    }

    public async Task<IReadOnlyList<SandboxLogLine>> GetLogsAsync(string sandboxId, DateTimeOffset? from, int limit, bool backward, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command(backward
                ? "SELECT seq, at, level, message FROM sandbox_logs WHERE sandbox_id = @id AND at <= @from ORDER BY seq DESC LIMIT @limit;"
                : "SELECT seq, at, level, message FROM sandbox_logs WHERE sandbox_id = @id AND at >= @from ORDER BY seq LIMIT @limit;")
            .With("@id", sandboxId)
            .With("@from", from?.ToUnixTimeMilliseconds() ?? (backward ? long.MaxValue : 0L))
            .With("@limit", (long)limit);
        var lines = new List<SandboxLogLine>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            lines.Add(new SandboxLogLine(
                reader.GetInt64(0),
                DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)),
                ParseLevel(reader.GetString(2)),
                reader.GetString(3)));
        }
        return lines;
    }

    public async Task<int> PurgeAsync(DateTimeOffset endedBefore, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using var command = connection.Command("""
            DELETE FROM sandbox_logs WHERE sandbox_id IN
                (SELECT sandbox_id FROM sandboxes WHERE state = @killed AND ended_at < @cutoff);
            """, transaction)
            .With("@cutoff", endedBefore.ToUnixTimeMilliseconds())
            .With("@killed", StateName(SandboxState.Killed));
        await command.ExecuteNonQueryAsync(cancellationToken);
        command.CommandText = "DELETE FROM sandboxes WHERE state = @killed AND ended_at < @cutoff;";
        var count = await command.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        if (count > 0)
        {
            StoreLog.Purged(logger, count, endedBefore);
        }
        return count;
    }

    public Task AddApiKeyAsync(string keyHash, string keyMask, DateTimeOffset createdAt, CancellationToken cancellationToken) =>
        AddApiKeyAsync(new ApiKeyRecord
        {
            KeyId = Guid.NewGuid().ToString(),
            KeyHash = keyHash,
            KeyMask = keyMask,
            TeamId = SandboxRecord.DefaultTeamId,
            Name = "first key",
            CreatedAt = createdAt,
        }, cancellationToken);

    public async Task<IReadOnlyList<string>> ListApiKeyHashesAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("SELECT key_hash FROM api_keys ORDER BY created_at;");
        var hashes = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            hashes.Add(reader.GetString(0));
        }
        return hashes;
    }

    private static DbCommand Bind(DbCommand command, SandboxRecord r) => command
        .With("@id", r.SandboxId)
        .With("@template", r.TemplateId)
        .With("@alias", r.Alias)
        .With("@runtime", r.RuntimeName)
        .With("@state", StateName(r.State))
        .With("@metadata", JsonSerializer.Serialize(
            r.Metadata as Dictionary<string, string> ?? new Dictionary<string, string>(r.Metadata), StoreJsonContext.Default.DictionaryStringString))
        .With("@cpu", (long)r.CpuCount)
        .With("@mem", (long)r.MemoryMB)
        .With("@disk", (long)r.DiskSizeMB)
        .With("@pids", (long)r.MaxPids)
        .With("@started", r.StartedAt.ToUnixTimeMilliseconds())
        .With("@end", r.EndAt.ToUnixTimeMilliseconds())
        .With("@ended", r.EndedAt?.ToUnixTimeMilliseconds())
        .With("@reason", r.EndReason)
        .With("@envd", r.EnvdAccessToken)
        .With("@traffic", r.TrafficAccessToken)
        .With("@internet", Flag(r.AllowInternetAccess))
        .With("@autopause", Flag(r.AutoPause))
        .With("@team", r.TeamId)
        .With("@autopausememory", Flag(r.AutoPauseMemory))
        .With("@autoresume", Flag(r.AutoResume))
        .With("@pausedat", r.PausedAt?.ToUnixTimeMilliseconds())
        .With("@pausedmemory", Flag(r.PausedWithMemory));

    private static SandboxRecord Read(DbDataReader reader) => new()
    {
        SandboxId = reader.GetString(0),
        TemplateId = reader.GetString(1),
        Alias = reader.IsDBNull(2) ? null : reader.GetString(2),
        RuntimeName = reader.GetString(3),
        State = ParseState(reader.GetString(4)),
        Metadata = JsonSerializer.Deserialize(reader.GetString(5), StoreJsonContext.Default.DictionaryStringString) ?? [],
        CpuCount = checked((int)reader.GetInt64(6)),
        MemoryMB = checked((int)reader.GetInt64(7)),
        DiskSizeMB = checked((int)reader.GetInt64(8)),
        MaxPids = checked((int)reader.GetInt64(9)),
        StartedAt = DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(10)),
        EndAt = DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(11)),
        EndedAt = reader.IsDBNull(12) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(12)),
        EndReason = reader.IsDBNull(13) ? null : reader.GetString(13),
        EnvdAccessToken = reader.IsDBNull(14) ? null : reader.GetString(14),
        TrafficAccessToken = reader.IsDBNull(15) ? null : reader.GetString(15),
        AllowInternetAccess = reader.IsDBNull(16) ? null : reader.GetInt64(16) != 0,
        AutoPause = reader.GetInt64(17) != 0,
        TeamId = reader.GetString(18),
        AutoPauseMemory = reader.GetInt64(19) != 0,
        AutoResume = reader.GetInt64(20) != 0,
        PausedAt = reader.IsDBNull(21) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(21)),
        PausedWithMemory = reader.IsDBNull(22) ? null : reader.GetInt64(22) != 0,
        NodeId = reader.IsDBNull(23) ? null : reader.GetString(23),
    };

    // Booleans are stored as 0/1 integers in both engines.
    private static long? Flag(bool? value) => value is { } b ? (b ? 1L : 0L) : null;

    internal static string StateName(SandboxState state) => state switch
    {
        SandboxState.Starting => "starting",
        SandboxState.Running => "running",
        SandboxState.Killed => "killed",
        SandboxState.Paused => "paused",
        _ => throw new ArgumentOutOfRangeException(nameof(state)),
    };

    internal static SandboxState ParseState(string text) => text switch
    {
        "starting" => SandboxState.Starting,
        "running" => SandboxState.Running,
        "killed" => SandboxState.Killed,
        "paused" => SandboxState.Paused,
        _ => throw new InvalidDataException($"unknown sandbox state '{text}' in the state database"),
    };

    internal static string LevelName(SandboxLogLevel level) => level switch
    {
        SandboxLogLevel.Debug => "debug",
        SandboxLogLevel.Info => "info",
        SandboxLogLevel.Warn => "warn",
        SandboxLogLevel.Error => "error",
        _ => throw new ArgumentOutOfRangeException(nameof(level)),
    };

    internal static SandboxLogLevel ParseLevel(string text) => text switch
    {
        "debug" => SandboxLogLevel.Debug,
        "info" => SandboxLogLevel.Info,
        "warn" => SandboxLogLevel.Warn,
        "error" => SandboxLogLevel.Error,
        _ => throw new InvalidDataException($"unknown log level '{text}' in the state database"),
    };
}
