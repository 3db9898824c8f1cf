using System.Data.Common;
using Microsoft.Data.Sqlite;

namespace Paddock.Daemon.Store;

/// <summary>
/// The SQLite state store: one file in the state directory, in WAL mode so that API reads never wait for the writer.
/// Every call opens a pooled connection of its own, which keeps concurrent callers apart without a lock here. The
/// tables and their SQL are <see cref="StateStore"/>'s.
/// </summary>
internal sealed class SqliteStore : StateStore
{
    private const int SqliteConstraint = 19;

    private readonly string _connectionString;
    private readonly string _path;

    public SqliteStore(string databasePath, ILogger<SqliteStore> logger)
        : base(logger)
    {
        _path = databasePath;
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

    protected override bool BatchesAreAtomic => false;

    public override async Task InitializeAsync(CancellationToken cancellationToken)
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
        await MigrateAsync(connection, [(SqliteMigrations.Steps, 1, int.MaxValue)], _path, "use another state directory", cancellationToken);
    }

    public override async Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken) => await OpenAsync(cancellationToken);

    public override bool IsUniqueViolation(DbException error) => error is SqliteException { SqliteErrorCode: SqliteConstraint };

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
}
