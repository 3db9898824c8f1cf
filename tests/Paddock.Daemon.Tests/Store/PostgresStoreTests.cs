using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Paddock.Daemon.Audit;
using Paddock.Daemon.Store;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Tests.Store;

/// <summary>The store contract (<see cref="StoreContractTests"/>) on a real PostgreSQL, and its schema and migrations.</summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresStoreTests(PostgresFixture fixture) : StoreContractTests
{
    private readonly List<PostgresStore> _opened = [];

    private async Task<(PostgresStore Store, string Database)> OpenPostgresAsync(string? database = null)
    {
        database ??= await fixture.Server.CreateDatabaseAsync(Timeout.Token);
        var store = new PostgresStore(fixture.Server.ConnectionString(database), NullLogger<PostgresStore>.Instance);
        _opened.Add(store);
        await store.InitializeAsync(Timeout.Token);
        return (store, database);
    }

    private protected override async Task<StoreSet> OpenAsync()
    {
        var (store, _) = await OpenPostgresAsync();
        return new StoreSet(store, store, store, new TemplateRecords(store, soleWriter: false), new AuditStore(store), store);
    }

    private async Task<T> ScalarAsync<T>(string database, string sql)
    {
        await using var connection = new NpgsqlConnection(fixture.Server.ConnectionString(database) + ";Pooling=false");
        await connection.OpenAsync(Timeout.Token);
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync(Timeout.Token))!;
    }

    [Fact]
    public async Task Every_step_applies_once_and_no_column_is_32_bit()
    {
        var (_, database) = await OpenPostgresAsync();
        await OpenPostgresAsync(database);
        Assert.Equal((long)(SqliteMigrations.Steps.Count + PostgresMigrations.ClusterSteps.Count), await ScalarAsync<long>(database, "SELECT count(*) FROM schema_migrations;"));
        // Unix milliseconds do not fit in int4: every integer column must be int8. Orleans' membership tables (cluster
        // mode) are the exception: their integers (ports, generations, statuses) are its contract's int4.
        Assert.Equal(0L, await ScalarAsync<long>(database,
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND data_type IN ('integer', 'smallint') AND table_name NOT LIKE 'orleans%';"));
        Assert.True(await ScalarAsync<long>(database, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND data_type = 'bigint';") > 20);
    }

    [Fact]
    public async Task Two_daemons_migrating_one_fresh_database_at_once_both_succeed()
    {
        var database = await fixture.Server.CreateDatabaseAsync(Timeout.Token);
        var stores = Enumerable.Range(0, 3).Select(_ => new PostgresStore(fixture.Server.ConnectionString(database), NullLogger<PostgresStore>.Instance)).ToList();
        _opened.AddRange(stores);
        await Task.WhenAll(stores.Select(s => Task.Run(() => s.InitializeAsync(Timeout.Token)))).WaitAsync(Timeout.Token);
        Assert.Equal((long)(SqliteMigrations.Steps.Count + PostgresMigrations.ClusterSteps.Count), await ScalarAsync<long>(database, "SELECT count(*) FROM schema_migrations;"));
    }

    [Fact]
    public async Task A_database_from_a_newer_paddockd_is_refused()
    {
        var (_, database) = await OpenPostgresAsync();
        // A shared step this paddockd does not know yet (below the PostgreSQL-only steps, which start at 1001).
        await ScalarAsync<int>(database, "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0) RETURNING 1;");
        var store = new PostgresStore(fixture.Server.ConnectionString(database), NullLogger<PostgresStore>.Instance);
        _opened.Add(store);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => store.InitializeAsync(Timeout.Token));
        Assert.Contains("999", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Password", ex.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Step_2_gives_keys_of_a_step_1_database_uuid_ids_as_on_SQLite()
    {
        var database = await fixture.Server.CreateDatabaseAsync(Timeout.Token);
        var step1 = PostgresMigrations.Steps.Single(s => s.Version == 1).Sql;
        await ScalarAsync<int>(database, $"""
            CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
            {step1}
            INSERT INTO schema_migrations VALUES (1, 0);
            INSERT INTO api_keys (key_hash, key_mask, created_at) VALUES ('h1', 'e2b_…1', 1), ('h2', 'e2b_…2', 2);
            SELECT 1;
            """);
        var (store, _) = await OpenPostgresAsync(database);
        var keys = await store.ListApiKeysAsync(Timeout.Token);
        Assert.Equal(["h1", "h2"], keys.Select(k => k.KeyHash));
        Assert.All(keys, k => Assert.Matches("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", k.KeyId));
        Assert.NotEqual(keys[0].KeyId, keys[1].KeyId);
        Assert.All(keys, k => Assert.Equal((SandboxRecord.DefaultTeamId, "first key"), (k.TeamId, k.Name)));
    }

    [Fact]
    public void The_PostgreSQL_steps_are_the_SQLite_steps_translated()
    {
        Assert.Equal(SqliteMigrations.Steps.Select(s => s.Version), PostgresMigrations.Steps.Select(s => s.Version));
        Assert.All(PostgresMigrations.Steps, s =>
        {
            Assert.DoesNotContain("AUTOINCREMENT", s.Sql, StringComparison.Ordinal);
            Assert.DoesNotContain("randomblob", s.Sql, StringComparison.Ordinal);
            Assert.DoesNotMatch(@"\bINTEGER\b", s.Sql);
        });
        Assert.Contains("seq        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", PostgresMigrations.Steps[0].Sql, StringComparison.Ordinal);
    }

    public override void Dispose()
    {
        foreach (var store in _opened)
        {
            store.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        base.Dispose();
    }
}

/// <summary>The <c>--store</c> URI: what it accepts and how it says what is wrong.</summary>
public sealed class PostgresConnectionStringTests
{
    [Fact]
    public void A_libpq_uri_becomes_an_Npgsql_connection_string()
    {
        var builder = new NpgsqlConnectionStringBuilder(PostgresConnectionString.FromUri("postgres://paddock:s%40cret@db.internal:6543/paddock?sslmode=require&connect_timeout=3"));
        Assert.Equal(("db.internal", 6543, "paddock", "s@cret", "paddock", SslMode.Require, 3),
            (builder.Host, builder.Port, builder.Username, builder.Password, builder.Database, builder.SslMode, builder.Timeout));

        var socket = new NpgsqlConnectionStringBuilder(PostgresConnectionString.FromUri("postgresql://postgres@localhost/db?host=%2Frun%2Fpostgresql"));
        Assert.Equal(("/run/postgresql", 5432, "db"), (socket.Host, socket.Port, socket.Database));
    }

    [Theory]
    [InlineData("postgres://u:p@host:5432/", "names no database")]
    [InlineData("postgres://u:p@host/db?sslmode=sometimes", "sslmode 'sometimes'")]
    [InlineData("postgres://u:p@host/db?colour=blue", "unknown parameter 'colour'")]
    [InlineData("postgres://u:p@host/db?port=99999", "port '99999'")]
    public void A_bad_uri_is_refused_with_what_is_wrong(string uri, string expected)
    {
        var ex = Assert.Throws<ArgumentException>(() => PostgresConnectionString.FromUri(uri));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_daemon_option_takes_sqlite_or_a_postgres_uri_and_never_echoes_a_password()
    {
        Assert.Null(DaemonOptions.Parse(["--store", "sqlite"]).PostgresConnectionString);
        Assert.Null(DaemonOptions.Parse([]).PostgresConnectionString);
        Assert.Contains("Host=h", DaemonOptions.Parse([], name => name == "PADDOCK_STORE" ? "postgres://u@h/d" : null).PostgresConnectionString, StringComparison.Ordinal);
        var ex = Assert.Throws<ArgumentException>(() => DaemonOptions.Parse(["--store", "mysql://u:hunter2@h/d"]));
        Assert.Contains("expected sqlite or postgres://", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2", ex.Message, StringComparison.Ordinal);
        var noDb = Assert.Throws<ArgumentException>(() => DaemonOptions.Parse(["--store", "postgres://u:hunter2@h"]));
        Assert.DoesNotContain("hunter2", noDb.Message, StringComparison.Ordinal);
    }
}
