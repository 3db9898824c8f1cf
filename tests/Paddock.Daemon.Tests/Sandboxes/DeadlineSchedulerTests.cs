using System.Threading.Channels;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Tests.Sandboxes;

public sealed class DeadlineSchedulerTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private static (DeadlineScheduler Scheduler, ChannelReader<string> Due) Create()
    {
        var due = Channel.CreateUnbounded<string>();
        var scheduler = new DeadlineScheduler(TimeProvider.System, NullLogger<DeadlineScheduler>.Instance,
            (id, _) => due.Writer.WriteAsync(id).AsTask());
        return (scheduler, due.Reader);
    }

    [Fact]
    public async Task Deadlines_fire_in_deadline_order_not_in_scheduling_order()
    {
        var (scheduler, due) = Create();
        using var _ = scheduler;
        var now = DateTimeOffset.UtcNow;
        scheduler.Schedule("late", now.AddMilliseconds(900));
        scheduler.Schedule("early", now.AddMilliseconds(300));
        scheduler.Schedule("past", now.AddSeconds(-5));
        await scheduler.StartAsync(CancellationToken.None);
        Assert.Equal("past", await due.ReadAsync().AsTask().WaitAsync(Wait));
        Assert.Equal("early", await due.ReadAsync().AsTask().WaitAsync(Wait));
        Assert.Equal("late", await due.ReadAsync().AsTask().WaitAsync(Wait));
        Assert.Equal(0, scheduler.Count);
        await scheduler.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task A_moved_deadline_fires_once_at_its_new_time_and_a_cancelled_one_never()
    {
        var (scheduler, due) = Create();
        using var _ = scheduler;
        await scheduler.StartAsync(CancellationToken.None);
        var now = DateTimeOffset.UtcNow;
        scheduler.Schedule("moved", now.AddMilliseconds(200));
        scheduler.Schedule("cancelled", now.AddMilliseconds(300));
        scheduler.Schedule("marker", now.AddMilliseconds(1200));
        scheduler.Schedule("moved", now.AddMilliseconds(800));
        scheduler.Cancel("cancelled");
        Assert.True(scheduler.TryGetDeadline("moved", out var moved));
        Assert.Equal(now.AddMilliseconds(800), moved);

        // Deadlines fire in order, so "moved" before "marker" proves it fired at its new time, and nothing else fired.
        Assert.Equal("moved", await due.ReadAsync().AsTask().WaitAsync(Wait));
        Assert.Equal("marker", await due.ReadAsync().AsTask().WaitAsync(Wait));
        Assert.False(due.TryRead(out var extra), $"unexpected expiry of {extra}");
        await scheduler.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task An_earlier_deadline_added_while_the_loop_sleeps_wakes_it()
    {
        var (scheduler, due) = Create();
        using var _ = scheduler;
        await scheduler.StartAsync(CancellationToken.None);
        scheduler.Schedule("far", DateTimeOffset.UtcNow.AddHours(1));
        await Task.Delay(200);
        scheduler.Schedule("near", DateTimeOffset.UtcNow.AddMilliseconds(100));
        Assert.Equal("near", await due.ReadAsync().AsTask().WaitAsync(Wait));
        Assert.Equal(1, scheduler.Count);
        await scheduler.StopAsync(CancellationToken.None);
    }
}
