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

    public PostgresStore(string connectionString, ILogger<PostgresStore> logger)
        : base(logger)
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
            await MigrateAsync(connection, PostgresMigrations.Steps, Description, "use another database", cancellationToken);
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
