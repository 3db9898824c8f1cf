using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Audit;
using Paddock.Daemon.Store;
using Paddock.Daemon.Templates;
using Paddock.Daemon.Tests.Api;

namespace Paddock.Daemon.Tests.Store;

/// <summary>The store contract (<see cref="StoreContractTests"/>) on SQLite, and what only the SQLite file does.</summary>
public sealed class SqliteStoreTests : StoreContractTests
{
    private readonly TempDir _dir = new();

    private string DbPath => Path.Combine(_dir.Path, "paddock.db");

    private async Task<SqliteStore> OpenSqliteAsync()
    {
        var store = new SqliteStore(DbPath, NullLogger<SqliteStore>.Instance);
        await store.InitializeAsync(Timeout.Token);
        return store;
    }

    private protected override async Task<StoreSet> OpenAsync()
    {
        var store = await OpenSqliteAsync();
        return new StoreSet(store, store, store, new TemplateRecords(store, soleWriter: true), new AuditStore(store), store);
    }

    [Fact]
    public async Task Migrations_run_once_and_the_database_is_in_WAL_mode()
    {
        await OpenSqliteAsync();
        var again = await OpenSqliteAsync();
        await again.InsertAsync(TestRecords.Record("x"), Timeout.Token);
        await using var connection = new SqliteConnection($"Data Source={DbPath}");
        await connection.OpenAsync(Timeout.Token);
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode;";
        Assert.Equal("wal", (string?)await command.ExecuteScalarAsync(Timeout.Token));
        command.CommandText = "SELECT COUNT(*) FROM schema_migrations;";
        Assert.Equal((long)SqliteMigrations.Steps.Count, (long)(await command.ExecuteScalarAsync(Timeout.Token))!);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(DbPath));
    }

    [Fact]
    public async Task A_database_from_a_newer_paddockd_is_refused()
    {
        await OpenSqliteAsync();
        await using (var connection = new SqliteConnection($"Data Source={DbPath};Pooling=false"))
        {
            await connection.OpenAsync(Timeout.Token);
            await using var command = connection.CreateCommand();
            command.CommandText = "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0);";
            await command.ExecuteNonQueryAsync(Timeout.Token);
        }
        var store = new SqliteStore(DbPath, NullLogger<SqliteStore>.Instance);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => store.InitializeAsync(Timeout.Token));
        Assert.Contains("999", ex.Message, StringComparison.Ordinal);
    }

    public override void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _dir.Dispose();
        base.Dispose();
    }
}
