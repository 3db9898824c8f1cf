using System.Data.Common;
using Npgsql;
using NpgsqlTypes;

namespace Paddock.Daemon.Store;

/// <summary>
/// The PostgreSQL state store (<c>--store postgres://…</c>): the tables and SQL of <see cref="StateStore"/>, through
/// Npgsql's pooled data source. Times stay Unix milliseconds and booleans integers (BIGINT here, see
/// <see cref="PostgresMigrations"/>), so a record reads the same from either store.
/// </summary>
internal sealed class PostgresStore : StateStore, IAsyncDisposable
{
    // Any fixed 64-bit number: the key of the advisory lock that lets one paddockd at a time migrate the schema.
    private const long MigrationLockKey = 0x7061_6464_6f63_6b01; // "paddock" + 1

    // The key of the lock a daemon holds for as long as it uses the database (ClaimAsync).
    private const long DaemonLockKey = 0x7061_6464_6f63_6b02;

    private readonly NpgsqlDataSource _dataSource;
    private NpgsqlConnection? _claim;

    public PostgresStore(string connectionString, ILogger<PostgresStore> logger, string? nodeId = null)
        : base(logger, nodeId)
    {
        _dataSource = NpgsqlDataSource.Create(connectionString);
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        Description = $"postgres://{builder.Host}:{builder.Port}/{builder.Database}";
    }

    /// <summary>Where the store is, without credentials, for logs and messages.</summary>
    public string Description { get; }

    protected override bool BatchesAreAtomic => true;

    public override async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        // Several paddockd may start at once against one database: the lock makes the second wait for the first's
        // steps and then find them applied, instead of both running step 1.
        await ExecuteAsync(connection, $"SELECT pg_advisory_lock({MigrationLockKey});", cancellationToken);
        try
        {
            await ExecuteAsync(connection, "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);", cancellationToken);
            // The shared steps and the PostgreSQL-only ones (from 1001) are two sequences: each is checked against
            // what this paddockd knows of it, so a future shared step 9 is not hidden behind step 1002.
            await MigrateAsync(connection,
                [
                    (PostgresMigrations.Steps, 1, PostgresMigrations.FirstClusterStep - 1),
                    (PostgresMigrations.ClusterSteps, PostgresMigrations.FirstClusterStep, int.MaxValue),
                ],
                Description, "use another database", cancellationToken);
        }
        finally
        {
            await ExecuteAsync(connection, $"SELECT pg_advisory_unlock({MigrationLockKey});", CancellationToken.None);
        }
    }

    /// <summary>
    /// Makes this daemon the database's only one, for as long as it runs: a session advisory lock on a connection of
    /// its own. Until cluster mode records which node runs which sandbox (issue 17), a second paddockd on the same
    /// database would take the first one's sandboxes for its own lost ones at its start (SandboxRecovery) and end
    /// their records. Throws <see cref="InvalidOperationException"/> when another daemon holds the lock. The lock
    /// goes with the connection: if PostgreSQL restarts, it is not taken again (a known gap until cluster mode).
    /// </summary>
    public async Task ClaimAsync(CancellationToken cancellationToken)
    {
        var connection = await OpenAsync(cancellationToken);
        try
        {
            await using var command = new NpgsqlCommand($"SELECT pg_try_advisory_lock({DaemonLockKey});", connection);
            if (await command.ExecuteScalarAsync(cancellationToken) is not true)
            {
                throw new InvalidOperationException(
                    $"another paddockd already uses the state database {Description}; one database serves one paddockd until cluster mode exists");
            }
            _claim = connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Cluster mode's form of <see cref="ClaimAsync"/>: many daemons share the database, but one node id is one
    /// daemon (two with the same id would each take the other's sandboxes for strays at start). The lock is keyed by
    /// the id and goes with the connection, so a SIGKILLed node's lock is released when PostgreSQL sees its
    /// connection close and the node can start again under the same id.
    /// </summary>
    public async Task ClaimNodeAsync(string nodeId, CancellationToken cancellationToken)
    {
        var connection = await OpenAsync(cancellationToken);
        try
        {
            await using var command = new NpgsqlCommand("SELECT pg_try_advisory_lock(hashtextextended('paddock-node:' || @node, 0));", connection);
            command.Parameters.AddWithValue("node", nodeId);
            if (await command.ExecuteScalarAsync(cancellationToken) is not true)
            {
                throw new InvalidOperationException(
                    $"another paddockd already runs as node '{nodeId}' on the state database {Description}; give each node its own --node-id");
            }
            _claim = connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Ends, in one statement (so one transaction), every record of <paramref name="nodeId"/> that is still starting,
    /// running or paused, with <paramref name="reason"/> as its end reason and a line in its log. Run by every
    /// surviving node when the cluster declares a node dead: the first one ends the records, the others find none.
    /// Returns how many it ended.
    /// </summary>
    public async Task<int> MarkNodeLostAsync(string nodeId, string reason, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("""
            WITH lost AS (
                UPDATE sandboxes SET state = @killed, ended_at = @now, end_reason = @reason
                WHERE node_id = @node AND state = ANY(@live)
                RETURNING sandbox_id)
            INSERT INTO sandbox_logs (sandbox_id, at, level, message)
            SELECT sandbox_id, @now, @level, @reason FROM lost;
            """, connection);
        command.Parameters.AddWithValue("killed", StateName(SandboxState.Killed));
        command.Parameters.AddWithValue("now", DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("reason", reason);
        command.Parameters.AddWithValue("node", nodeId);
        command.Parameters.AddWithValue("live", new[] { SandboxState.Starting, SandboxState.Running, SandboxState.Paused }.Select(StateName).ToArray());
        command.Parameters.AddWithValue("level", LevelName(SandboxLogLevel.Warn));
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Records (or replaces) where a node's API is, for the other nodes' routers.</summary>
    public async Task RegisterNodeAsync(string nodeId, string apiUrl, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("""
            INSERT INTO cluster_nodes (node_id, api_url, updated_at) VALUES (@node, @url, @now)
            ON CONFLICT (node_id) DO UPDATE SET api_url = excluded.api_url, updated_at = excluded.updated_at;
            """, connection);
        command.Parameters.AddWithValue("node", nodeId);
        command.Parameters.AddWithValue("url", apiUrl);
        command.Parameters.AddWithValue("now", DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>The API URL a node registered, or null.</summary>
    public async Task<string?> GetNodeUrlAsync(string nodeId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT api_url FROM cluster_nodes WHERE node_id = @node;", connection);
        command.Parameters.AddWithValue("node", nodeId);
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    /// <summary>The node a sandbox's record names (cluster mode), or null when there is no such record or no node.</summary>
    public async Task<(string? NodeId, SandboxState State)?> GetNodeAsync(string sandboxId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT node_id, state FROM sandboxes WHERE sandbox_id = @id;", connection);
        command.Parameters.AddWithValue("id", sandboxId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken)
            ? (reader.IsDBNull(0) ? null : reader.GetString(0), ParseState(reader.GetString(1)))
            : null;
    }

    public override async Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken) => await OpenAsync(cancellationToken);

    public override bool IsUniqueViolation(DbException error) => error is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation };

    internal async Task<NpgsqlConnection> OpenAsync(CancellationToken cancellationToken) =>
        await _dataSource.OpenConnectionAsync(cancellationToken);

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>A nullable value as a parameter; the type is given because Npgsql cannot infer one from DBNull.</summary>
    internal static void AddNullable(NpgsqlCommand command, string name, NpgsqlDbType type, object? value) =>
        command.Parameters.Add(new NpgsqlParameter(name, type) { Value = value ?? DBNull.Value });

    public async ValueTask DisposeAsync()
    {
        if (_claim is not null)
        {
            await _claim.DisposeAsync();
        }
        await _dataSource.DisposeAsync();
    }
}
