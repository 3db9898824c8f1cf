using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Audit;
using Paddock.Daemon.Observability;
using Paddock.Daemon.Store;
using Paddock.Daemon.Tests.Api;

namespace Paddock.Daemon.Tests.Observability;

/// <summary>The audit trail's bound and accounting on the real store, at the scale of a flood (100,000 commands).</summary>
public sealed class AuditBoundTests : IAsyncLifetime
{
    private readonly TempDir _dir = new();
    private SqliteStore _store = null!;

    public async Task InitializeAsync()
    {
        _store = new SqliteStore(Path.Combine(_dir.Path, "paddock.db"), NullLogger<SqliteStore>.Instance);
        await _store.InitializeAsync(CancellationToken.None);
    }

    public Task DisposeAsync()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _dir.Dispose();
        return Task.CompletedTask;
    }

    private AuditTrail NewTrail(int max) =>
        new(new AuditStore(_store), new DaemonOptions { AuditMaxEventsPerSandbox = max }, new DaemonMetrics(new DaemonOptions()), TimeProvider.System, NullLogger<AuditTrail>.Instance);

    private static AuditEvent Command(int i) => new() { At = DateTimeOffset.UtcNow, Kind = AuditKinds.ProcessStart, Cmd = "/bin/sh", Pid = i };

    [Fact]
    public async Task One_hundred_thousand_commands_leave_the_bound_the_first_half_the_newest_half_and_a_count()
    {
        const int Max = 1000;
        const int Flood = 100_000;
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var trail = NewTrail(Max);
        await trail.StartAsync(timeout.Token);
        var audit = new AuditStore(_store);
        try
        {
            trail.Record("quietsandbox00000000", "team-b", Command(-1));
            // As fast as the proxy could hand them over: in bursts of 1,000 between which the writer catches up
            // (a command through the proxy takes a millisecond or more).
            for (var i = 0; i < Flood; i++)
            {
                trail.Record("floodsandbox00000000", "team-a", Command(i));
                if (i % 1000 == 999)
                {
                    await trail.FlushAsync(timeout.Token);
                }
            }
            await trail.FlushAsync(timeout.Token);

            Assert.Equal(Max, await audit.CountAsync("floodsandbox00000000", timeout.Token));
            var all = new List<AuditEvent>();
            long after = 0;
            AuditTrailRead read;
            do
            {
                read = await audit.ReadAsync("floodsandbox00000000", after, null, null, 400, timeout.Token);
                all.AddRange(read.Events);
                after = read.Events.Count > 0 ? read.Events[^1].Seq : after;
            }
            while (read.Events.Count > 0);
            Assert.Equal(Flood - Max, read.Dropped);
            Assert.Equal("team-a", read.TeamId);
            Assert.Equal(Enumerable.Range(0, Max / 2).Concat(Enumerable.Range(Flood - Max / 2, Max / 2)), all.Select(e => e.Pid!.Value));
            Assert.Equal(all[Max / 2 - 1].Seq, read.DroppedAfterSeq);
            // Another sandbox's trail is untouched by the flood.
            var quiet = await audit.ReadAsync("quietsandbox00000000", 0, null, null, 10, timeout.Token);
            Assert.Equal([-1], quiet.Events.Select(e => e.Pid!.Value));
            Assert.Equal(0, quiet.Dropped);
            // The disk: deleted rows' pages are reused, so the file stays near the size of the kept rows (~100 bytes each).
            var bytes = new FileInfo(Path.Combine(_dir.Path, "paddock.db")).Length + new FileInfo(Path.Combine(_dir.Path, "paddock.db-wal")).Length;
            Assert.True(bytes < 16L << 20, $"the database and its WAL hold {bytes} bytes after the flood");
        }
        finally
        {
            await trail.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Events_the_queue_cannot_take_are_counted_as_dropped_not_lost_silently()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var trail = NewTrail(100_000);
        // Not started yet: nothing drains the queue, so past its capacity events are refused.
        const int Sent = AuditTrail.QueueCapacity + 500;
        for (var i = 0; i < Sent; i++)
        {
            trail.Record("burstsandbox00000000", "team-a", Command(i));
        }
        await trail.StartAsync(timeout.Token);
        try
        {
            await trail.FlushAsync(timeout.Token);
            // The lost ones are written with the next batch: one more event makes one.
            trail.Record("burstsandbox00000000", "team-a", Command(Sent));
            await trail.FlushAsync(timeout.Token);
            var read = await new AuditStore(_store).ReadAsync("burstsandbox00000000", 0, null, null, 10, timeout.Token);
            var kept = await new AuditStore(_store).CountAsync("burstsandbox00000000", timeout.Token);
            Assert.Equal(AuditTrail.QueueCapacity + 1, kept);
            Assert.Equal(500, read.Dropped);
        }
        finally
        {
            await trail.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Retention_removes_old_events_whether_or_not_the_sandbox_still_runs()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var trail = NewTrail(1000);
        await trail.StartAsync(timeout.Token);
        var audit = new AuditStore(_store);
        try
        {
            var now = DateTimeOffset.UtcNow;
            trail.Record("oldsandbox0000000000", "team-a", Command(1) with { At = now.AddDays(-40) });
            trail.Record("mixedsandbox00000000", "team-a", Command(2) with { At = now.AddDays(-40) });
            trail.Record("mixedsandbox00000000", "team-a", Command(3) with { At = now });
            await trail.FlushAsync(timeout.Token);
            Assert.Equal(2, await audit.PurgeAsync(now.AddDays(-30), timeout.Token));
            Assert.Empty((await audit.ReadAsync("oldsandbox0000000000", 0, null, null, 10, timeout.Token)).Events);
            Assert.Equal([3], (await audit.ReadAsync("mixedsandbox00000000", 0, null, null, 10, timeout.Token)).Events.Select(e => e.Pid!.Value));
        }
        finally
        {
            await trail.StopAsync(CancellationToken.None);
        }
    }
}
