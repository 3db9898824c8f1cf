using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace Paddock.Daemon.Store;

/// <summary>
/// The SQLite state store: one file in the state directory, in WAL mode so that API reads never wait for the writer.
/// Every call opens a pooled connection of its own, which keeps concurrent callers apart without a lock here.
/// </summary>
internal sealed partial class SqliteStore : ISandboxStore, IApiKeyStore, ITeamStore, IStoreConnections
{
    private readonly string _connectionString;
    private readonly string _path;
    private readonly ILogger<SqliteStore> _logger;

    public SqliteStore(string databasePath, ILogger<SqliteStore> logger)
    {
        _path = databasePath;
        _logger = logger;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = databasePath,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            Pooling = true,
            // Seconds a command waits for a lock held by another connection before failing with SQLITE_BUSY.
            DefaultTimeout = 30,
        }.ToString();
    }

    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        var created = !File.Exists(_path);
        await using var connection = await OpenAsync(cancellationToken);
        if (created && !OperatingSystem.IsWindows())
        {
            // Records hold access tokens: only the daemon's user may read them.
            File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
        // WAL is a property of the file; it sticks once set.
        await ExecuteAsync(connection, "PRAGMA journal_mode=WAL;", cancellationToken);
        await ExecuteAsync(connection, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);", cancellationToken);

        var applied = new HashSet<int>();
        await using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT version FROM schema_migrations;";
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                applied.Add(reader.GetInt32(0));
            }
        }
        var newest = applied.Count == 0 ? 0 : applied.Max();
        var known = SqliteMigrations.Steps.Max(s => s.Version);
        if (newest > known)
        {
            throw new InvalidOperationException(
                $"the state database {_path} is at schema version {newest}, newer than this paddockd knows ({known}); run a newer paddockd or use another state directory");
        }
        foreach (var (version, sql) in SqliteMigrations.Steps.OrderBy(s => s.Version))
        {
            if (applied.Contains(version))
            {
                continue;
            }
            await using var transaction = (SqliteTransaction)await connection.BeginTransactionAsync(cancellationToken);
            await using (var command = connection.CreateCommand())
            {
                command.Transaction = transaction;
                command.CommandText = sql;
                await command.ExecuteNonQueryAsync(cancellationToken);
                command.CommandText = "INSERT INTO schema_migrations (version, applied_at) VALUES ($v, $at);";
                command.Parameters.AddWithValue("$v", version);
                command.Parameters.AddWithValue("$at", DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
            await transaction.CommitAsync(cancellationToken);
            StoreLog.Migrated(_logger, version);
            newest = version;
        }
        StoreLog.Opened(_logger, _path, newest);
    }

    public async Task InsertAsync(SandboxRecord record, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO sandboxes (sandbox_id, template_id, alias, runtime, state, metadata, cpu_count, memory_mb, disk_mb, max_pids,
                                   started_at, end_at, ended_at, end_reason, envd_access_token, traffic_access_token, allow_internet_access, auto_pause, team_id,
                                   auto_pause_memory, auto_resume, paused_at, paused_memory)
            VALUES ($id, $template, $alias, $runtime, $state, $metadata, $cpu, $mem, $disk, $pids,
                    $started, $end, $ended, $reason, $envd, $traffic, $internet, $autopause, $team,
                    $autopausememory, $autoresume, $pausedat, $pausedmemory);
            """;
        Bind(command, record);
        try
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 19) // SQLITE_CONSTRAINT
        {
            throw new InvalidOperationException($"a sandbox record with id '{record.SandboxId}' already exists", ex);
        }
    }

    public async Task UpdateAsync(SandboxRecord record, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = """
            UPDATE sandboxes SET template_id = $template, alias = $alias, runtime = $runtime, state = $state, metadata = $metadata,
                cpu_count = $cpu, memory_mb = $mem, disk_mb = $disk, max_pids = $pids, started_at = $started, end_at = $end,
                ended_at = $ended, end_reason = $reason, envd_access_token = $envd, traffic_access_token = $traffic,
                allow_internet_access = $internet, auto_pause = $autopause, team_id = $team,
                auto_pause_memory = $autopausememory, auto_resume = $autoresume, paused_at = $pausedat, paused_memory = $pausedmemory
            WHERE sandbox_id = $id;
            """;
        Bind(command, record);
        if (await command.ExecuteNonQueryAsync(cancellationToken) == 0)
        {
            throw new InvalidOperationException($"no sandbox record with id '{record.SandboxId}' to update");
        }
    }

    public async Task SetDeadlineAsync(string sandboxId, DateTimeOffset endAt, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "UPDATE sandboxes SET end_at = $end WHERE sandbox_id = $id AND state = $running;";
        command.Parameters.AddWithValue("$id", sandboxId);
        command.Parameters.AddWithValue("$end", endAt.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("$running", StateName(SandboxState.Running));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<SandboxRecord?> GetAsync(string sandboxId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = SelectColumns + " WHERE sandbox_id = $id;";
        command.Parameters.AddWithValue("$id", sandboxId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Read(reader) : null;
    }

    public async Task<IReadOnlyList<SandboxRecord>> ListAsync(IReadOnlyCollection<SandboxState> states, CancellationToken cancellationToken)
    {
        if (states.Count == 0)
        {
            return [];
        }
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        var names = new List<string>();
        foreach (var (state, i) in states.Distinct().Select((s, i) => (s, i)))
        {
            names.Add("$s" + i.ToString(CultureInfo.InvariantCulture));
            command.Parameters.AddWithValue(names[^1], StateName(state));
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
        await using var connection = await OpenAsync(cancellationToken);
        await using var transaction = (SqliteTransaction)await connection.BeginTransactionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO sandbox_logs (sandbox_id, at, level, message) VALUES ($id, $at, $level, $message);
            DELETE FROM sandbox_logs WHERE sandbox_id = $id AND seq <= (
                SELECT seq FROM sandbox_logs WHERE sandbox_id = $id ORDER BY seq DESC LIMIT 1 OFFSET $keep);
            """;
        command.Parameters.AddWithValue("$id", sandboxId);
        command.Parameters.AddWithValue("$at", timestamp.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("$level", LevelName(level));
        command.Parameters.AddWithValue("$message", message);
        command.Parameters.AddWithValue("$keep", keepLast);
        await command.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    public async Task<IReadOnlyList<SandboxLogLine>> GetLogsAsync(string sandboxId, DateTimeOffset? from, int limit, bool backward, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = backward
            ? "SELECT seq, at, level, message FROM sandbox_logs WHERE sandbox_id = $id AND at <= $from ORDER BY seq DESC LIMIT $limit;"
            : "SELECT seq, at, level, message FROM sandbox_logs WHERE sandbox_id = $id AND at >= $from ORDER BY seq LIMIT $limit;";
        command.Parameters.AddWithValue("$id", sandboxId);
        command.Parameters.AddWithValue("$from", from?.ToUnixTimeMilliseconds() ?? (backward ? long.MaxValue : 0));
        command.Parameters.AddWithValue("$limit", limit);
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
        await using var connection = await OpenAsync(cancellationToken);
        await using var transaction = (SqliteTransaction)await connection.BeginTransactionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.Parameters.AddWithValue("$cutoff", endedBefore.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("$killed", StateName(SandboxState.Killed));
        command.CommandText = """
            DELETE FROM sandbox_logs WHERE sandbox_id IN
                (SELECT sandbox_id FROM sandboxes WHERE state = $killed AND ended_at < $cutoff);
            """;
        await command.ExecuteNonQueryAsync(cancellationToken);
        command.CommandText = "DELETE FROM sandboxes WHERE state = $killed AND ended_at < $cutoff;";
        var count = await command.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        if (count > 0)
        {
            StoreLog.Purged(_logger, count, endedBefore);
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
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT key_hash FROM api_keys ORDER BY created_at;";
        var hashes = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            hashes.Add(reader.GetString(0));
        }
        return hashes;
    }

    private const string SelectColumns = """
        SELECT sandbox_id, template_id, alias, runtime, state, metadata, cpu_count, memory_mb, disk_mb, max_pids,
               started_at, end_at, ended_at, end_reason, envd_access_token, traffic_access_token, allow_internet_access, auto_pause, team_id,
               auto_pause_memory, auto_resume, paused_at, paused_memory
        FROM sandboxes
        """;

    /// <summary>A new open connection to the same database (other stores of the daemon share the file and its schema).</summary>
    async Task<System.Data.Common.DbConnection> IStoreConnections.OpenConnectionAsync(CancellationToken cancellationToken) => await OpenAsync(cancellationToken);

    bool IStoreConnections.IsUniqueViolation(System.Data.Common.DbException error) => error is SqliteException { SqliteErrorCode: 19 }; // SQLITE_CONSTRAINT

    internal async Task<SqliteConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
            // NORMAL is durable across process crashes in WAL mode; only an OS crash can lose the last commits.
            await ExecuteAsync(connection, "PRAGMA synchronous=NORMAL;", cancellationToken);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    private static async Task ExecuteAsync(SqliteConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static void Bind(SqliteCommand command, SandboxRecord r)
    {
        command.Parameters.AddWithValue("$id", r.SandboxId);
        command.Parameters.AddWithValue("$template", r.TemplateId);
        command.Parameters.AddWithValue("$alias", (object?)r.Alias ?? DBNull.Value);
        command.Parameters.AddWithValue("$runtime", r.RuntimeName);
        command.Parameters.AddWithValue("$state", StateName(r.State));
        command.Parameters.AddWithValue("$metadata", JsonSerializer.Serialize(
            r.Metadata as Dictionary<string, string> ?? new Dictionary<string, string>(r.Metadata), StoreJsonContext.Default.DictionaryStringString));
        command.Parameters.AddWithValue("$cpu", r.CpuCount);
        command.Parameters.AddWithValue("$mem", r.MemoryMB);
        command.Parameters.AddWithValue("$disk", r.DiskSizeMB);
        command.Parameters.AddWithValue("$pids", r.MaxPids);
        command.Parameters.AddWithValue("$started", r.StartedAt.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("$end", r.EndAt.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("$ended", (object?)r.EndedAt?.ToUnixTimeMilliseconds() ?? DBNull.Value);
        command.Parameters.AddWithValue("$reason", (object?)r.EndReason ?? DBNull.Value);
        command.Parameters.AddWithValue("$envd", (object?)r.EnvdAccessToken ?? DBNull.Value);
        command.Parameters.AddWithValue("$traffic", (object?)r.TrafficAccessToken ?? DBNull.Value);
        command.Parameters.AddWithValue("$internet", r.AllowInternetAccess is { } b ? (b ? 1 : 0) : DBNull.Value);
        command.Parameters.AddWithValue("$autopause", r.AutoPause ? 1 : 0);
        command.Parameters.AddWithValue("$team", r.TeamId);
        command.Parameters.AddWithValue("$autopausememory", r.AutoPauseMemory ? 1 : 0);
        command.Parameters.AddWithValue("$autoresume", r.AutoResume ? 1 : 0);
        command.Parameters.AddWithValue("$pausedat", (object?)r.PausedAt?.ToUnixTimeMilliseconds() ?? DBNull.Value);
        command.Parameters.AddWithValue("$pausedmemory", r.PausedWithMemory is { } m ? (m ? 1 : 0) : DBNull.Value);
    }

    private static SandboxRecord Read(SqliteDataReader reader) => new()
    {
        SandboxId = reader.GetString(0),
        TemplateId = reader.GetString(1),
        Alias = reader.IsDBNull(2) ? null : reader.GetString(2),
        RuntimeName = reader.GetString(3),
        State = ParseState(reader.GetString(4)),
        Metadata = JsonSerializer.Deserialize(reader.GetString(5), StoreJsonContext.Default.DictionaryStringString) ?? [],
        CpuCount = reader.GetInt32(6),
        MemoryMB = reader.GetInt32(7),
        DiskSizeMB = reader.GetInt32(8),
        MaxPids = reader.GetInt32(9),
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
    };

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
