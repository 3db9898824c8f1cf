using BenchmarkDotNet.Attributes;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Store;

namespace Paddock.Bench.Micro;

/// <summary>
/// The store writes a create and a kill make (insert the record, then replace its state), against the baseline of
/// the same two statements through Microsoft.Data.Sqlite directly, on one open connection in WAL mode: the floor of
/// an SQLite write on this disk.
/// </summary>
[MemoryDiagnoser]
public class StoreBenchmarks
{
    private string _directory = "";
    private SqliteStore _store = null!;
    private SqliteConnection _raw = null!;
    private long _next;

    [GlobalSetup]
    public void Setup()
    {
        _directory = Directory.CreateTempSubdirectory("paddock-bench-store-").FullName;
        _store = new SqliteStore(Path.Combine(_directory, "state.db"), NullLogger<SqliteStore>.Instance);
        _store.InitializeAsync(CancellationToken.None).GetAwaiter().GetResult();
        _raw = new SqliteConnection($"Data Source={Path.Combine(_directory, "raw.db")}");
        _raw.Open();
        using var setup = _raw.CreateCommand();
        setup.CommandText = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE t (id TEXT PRIMARY KEY, state TEXT NOT NULL, body TEXT NOT NULL);";
        setup.ExecuteNonQuery();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _raw.Dispose();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    [Benchmark(Baseline = true, Description = "raw SQLite insert + update, one connection")]
    public int Raw()
    {
        var id = $"raw{_next++}";
        using var insert = _raw.CreateCommand();
        insert.CommandText = "INSERT INTO t (id, state, body) VALUES ($id, 'running', $body)";
        insert.Parameters.AddWithValue("$id", id);
        insert.Parameters.AddWithValue("$body", new string('x', 300));
        insert.ExecuteNonQuery();
        using var update = _raw.CreateCommand();
        update.CommandText = "UPDATE t SET state = 'killed' WHERE id = $id";
        update.Parameters.AddWithValue("$id", id);
        return update.ExecuteNonQuery();
    }

    [Benchmark(Description = "SqliteStore insert + update of a sandbox record")]
    public async Task<int> Store()
    {
        var now = DateTimeOffset.UtcNow;
        var record = new SandboxRecord
        {
            SandboxId = $"s{_next++}",
            TemplateId = "base",
            RuntimeName = "runc",
            State = SandboxState.Running,
            CpuCount = 2,
            MemoryMB = 512,
            DiskSizeMB = 1024,
            MaxPids = 1024,
            StartedAt = now,
            EndAt = now.AddMinutes(5),
            Metadata = new Dictionary<string, string> { ["user"] = "bench" },
        };
        await _store.InsertAsync(record, CancellationToken.None);
        await _store.UpdateAsync(record with { State = SandboxState.Killed, EndedAt = now, EndReason = "killed" }, CancellationToken.None);
        return 2;
    }
}
