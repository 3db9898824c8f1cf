using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Store;
using Paddock.Daemon.Tests.Api;

namespace Paddock.Daemon.Tests.Store;

public sealed class SqliteStoreTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));

    private string DbPath => Path.Combine(_dir.Path, "paddock.db");

    private async Task<SqliteStore> OpenAsync()
    {
        var store = new SqliteStore(DbPath, NullLogger<SqliteStore>.Instance);
        await store.InitializeAsync(_timeout.Token);
        return store;
    }

    [Fact]
    public async Task A_record_round_trips_with_every_field()
    {
        var store = await OpenAsync();
        var record = TestRecords.Record("abc") with { TrafficAccessToken = "traffic", AutoPause = true };
        await store.InsertAsync(record, _timeout.Token);
        var read = await store.GetAsync("abc", _timeout.Token);
        Assert.NotNull(read);
        Assert.Equal(record with { Metadata = read.Metadata }, read);
        Assert.Equal(record.Metadata, read.Metadata);
        Assert.Null(await store.GetAsync("nope", _timeout.Token));
    }

    [Fact]
    public async Task Inserting_the_same_id_twice_fails_with_a_clear_message()
    {
        var store = await OpenAsync();
        await store.InsertAsync(TestRecords.Record("dup"), _timeout.Token);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => store.InsertAsync(TestRecords.Record("dup"), _timeout.Token));
        Assert.Contains("dup", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Migrations_run_once_and_the_database_is_in_WAL_mode()
    {
        await OpenAsync();
        var again = await OpenAsync();
        await again.InsertAsync(TestRecords.Record("x"), _timeout.Token);
        await using var connection = new SqliteConnection($"Data Source={DbPath}");
        await connection.OpenAsync(_timeout.Token);
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode;";
        Assert.Equal("wal", (string?)await command.ExecuteScalarAsync(_timeout.Token));
        command.CommandText = "SELECT COUNT(*) FROM schema_migrations;";
        Assert.Equal((long)SqliteMigrations.Steps.Count, (long)(await command.ExecuteScalarAsync(_timeout.Token))!);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(DbPath));
    }

    [Fact]
    public async Task A_database_from_a_newer_paddockd_is_refused()
    {
        await OpenAsync();
        await using (var connection = new SqliteConnection($"Data Source={DbPath};Pooling=false"))
        {
            await connection.OpenAsync(_timeout.Token);
            await using var command = connection.CreateCommand();
            command.CommandText = "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0);";
            await command.ExecuteNonQueryAsync(_timeout.Token);
        }
        var store = new SqliteStore(DbPath, NullLogger<SqliteStore>.Instance);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => store.InitializeAsync(_timeout.Token));
        Assert.Contains("999", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task List_filters_by_state_newest_first()
    {
        var store = await OpenAsync();
        var t = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        await store.InsertAsync(TestRecords.Record("old", startedAt: t), _timeout.Token);
        await store.InsertAsync(TestRecords.Record("new", startedAt: t.AddSeconds(5)), _timeout.Token);
        await store.InsertAsync(TestRecords.Record("dead", SandboxState.Killed, t.AddSeconds(9)), _timeout.Token);
        await store.InsertAsync(TestRecords.Record("boot", SandboxState.Starting, t.AddSeconds(1)), _timeout.Token);
        var running = await store.ListAsync([SandboxState.Running], _timeout.Token);
        Assert.Equal(["new", "old"], running.Select(r => r.SandboxId));
        var live = await store.ListAsync([SandboxState.Running, SandboxState.Starting], _timeout.Token);
        Assert.Equal(["new", "boot", "old"], live.Select(r => r.SandboxId));
        Assert.Empty(await store.ListAsync([], _timeout.Token));
    }

    [Fact]
    public async Task A_deadline_change_does_not_revive_a_killed_record()
    {
        var store = await OpenAsync();
        var record = TestRecords.Record("k");
        await store.InsertAsync(record, _timeout.Token);
        var newEnd = record.EndAt.AddMinutes(10);
        await store.SetDeadlineAsync("k", newEnd, _timeout.Token);
        Assert.Equal(newEnd, (await store.GetAsync("k", _timeout.Token))!.EndAt);

        await store.UpdateAsync(record with { State = SandboxState.Killed, EndedAt = record.StartedAt.AddSeconds(1), EndReason = "killed by test" }, _timeout.Token);
        await store.SetDeadlineAsync("k", newEnd.AddHours(1), _timeout.Token);
        var read = await store.GetAsync("k", _timeout.Token);
        Assert.Equal(SandboxState.Killed, read!.State);
        Assert.Equal("killed by test", read.EndReason);
        Assert.Equal(record.EndAt, read.EndAt);
    }

    [Fact]
    public async Task Logs_are_bounded_per_sandbox_and_read_in_either_direction()
    {
        var store = await OpenAsync();
        var t0 = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        for (var i = 0; i < 12; i++)
        {
            await store.AppendLogAsync("s1", t0.AddSeconds(i), i % 2 == 0 ? SandboxLogLevel.Info : SandboxLogLevel.Warn, $"line {i}", keepLast: 5, _timeout.Token);
        }
        await store.AppendLogAsync("s2", t0, SandboxLogLevel.Error, "other sandbox", 5, _timeout.Token);

        var all = await store.GetLogsAsync("s1", null, 100, backward: false, _timeout.Token);
        Assert.Equal(["line 7", "line 8", "line 9", "line 10", "line 11"], all.Select(l => l.Message));
        Assert.Equal(SandboxLogLevel.Warn, all[0].Level);

        var fromNine = await store.GetLogsAsync("s1", t0.AddSeconds(9), 2, backward: false, _timeout.Token);
        Assert.Equal(["line 9", "line 10"], fromNine.Select(l => l.Message));

        var backward = await store.GetLogsAsync("s1", t0.AddSeconds(9), 2, backward: true, _timeout.Token);
        Assert.Equal(["line 9", "line 8"], backward.Select(l => l.Message));

        Assert.Single(await store.GetLogsAsync("s2", null, 100, false, _timeout.Token));
    }

    [Fact]
    public async Task Purge_removes_only_killed_records_that_ended_before_the_cutoff_and_their_logs()
    {
        var store = await OpenAsync();
        var t = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        await store.InsertAsync(TestRecords.Record("gone") with { State = SandboxState.Killed, EndedAt = t }, _timeout.Token);
        await store.InsertAsync(TestRecords.Record("recent") with { State = SandboxState.Killed, EndedAt = t.AddDays(2) }, _timeout.Token);
        await store.InsertAsync(TestRecords.Record("alive"), _timeout.Token);
        await store.AppendLogAsync("gone", t, SandboxLogLevel.Info, "x", 10, _timeout.Token);

        Assert.Equal(1, await store.PurgeAsync(t.AddDays(1), _timeout.Token));
        Assert.Null(await store.GetAsync("gone", _timeout.Token));
        Assert.Empty(await store.GetLogsAsync("gone", null, 10, false, _timeout.Token));
        Assert.NotNull(await store.GetAsync("recent", _timeout.Token));
        Assert.NotNull(await store.GetAsync("alive", _timeout.Token));
    }

    [Fact]
    public async Task Concurrent_writers_do_not_lose_records()
    {
        var store = await OpenAsync();
        var tasks = Enumerable.Range(0, 40).Select(i => Task.Run(async () =>
        {
            await store.InsertAsync(TestRecords.Record($"c{i}"), _timeout.Token);
            await store.AppendLogAsync($"c{i}", DateTimeOffset.UtcNow, SandboxLogLevel.Info, "hello", 10, _timeout.Token);
        }));
        await Task.WhenAll(tasks).WaitAsync(_timeout.Token);
        Assert.Equal(40, (await store.ListAsync([SandboxState.Running], _timeout.Token)).Count);
    }

    [Fact]
    public async Task Api_key_hashes_are_stored_once()
    {
        var store = await OpenAsync();
        await store.AddApiKeyAsync("h1", "e2b_…abcd", DateTimeOffset.UtcNow, _timeout.Token);
        await store.AddApiKeyAsync("h1", "e2b_…abcd", DateTimeOffset.UtcNow, _timeout.Token);
        Assert.Equal(["h1"], await store.ListApiKeyHashesAsync(_timeout.Token));
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _timeout.Dispose();
        _dir.Dispose();
    }
}
