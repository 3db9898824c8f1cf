using Paddock.Agent.Hosting;
using Paddock.Shared.Kestrel;

namespace Paddock.Agent.Tests.Hosting;

/// <summary>When <see cref="IdleTrim"/> trims: once per quiet spell, never with a request in flight, and no timer left armed after.</summary>
public sealed class IdleTrimTests
{
    private static readonly TimeSpan Quiet = TimeSpan.FromSeconds(2);

    [Fact]
    public void Start_arms_one_trim_that_runs_when_the_quiet_period_has_passed_and_is_not_rearmed()
    {
        var time = new ManualTime();
        var trims = 0;
        using var trim = new IdleTrim(Quiet, () => trims++, time);
        Assert.Null(time.Timer.Due);

        trim.Start();
        Assert.Equal(Quiet, time.Timer.Due);

        time.Advance(Quiet);
        time.Timer.Fire();
        Assert.Equal(1, trims);
        Assert.Equal(1, trim.Trims);
        // Nothing more happens until the next request: no periodic wake-ups in an idle agent.
        Assert.Null(time.Timer.Due);
    }

    [Fact]
    public void A_request_in_flight_holds_the_trim_off_and_its_end_arms_it_again()
    {
        var time = new ManualTime();
        var trims = 0;
        using var trim = new IdleTrim(Quiet, () => trims++, time);
        trim.Start();

        trim.RequestStarted();
        time.Advance(Quiet * 3);
        time.Timer.Fire();
        Assert.Equal(0, trims);
        Assert.Null(time.Timer.Due);

        trim.RequestEnded();
        Assert.Equal(Quiet, time.Timer.Due);
        time.Advance(Quiet);
        time.Timer.Fire();
        Assert.Equal(1, trims);
    }

    [Fact]
    public void A_request_that_ends_while_the_timer_is_pending_postpones_the_trim_by_the_rest_of_the_period()
    {
        var time = new ManualTime();
        var trims = 0;
        using var trim = new IdleTrim(Quiet, () => trims++, time);
        trim.Start();
        var changes = time.Timer.Changes;

        time.Advance(TimeSpan.FromSeconds(1.5));
        trim.RequestStarted();
        trim.RequestEnded();
        // A request in a burst does not touch the pending timer.
        Assert.Equal(changes, time.Timer.Changes);

        time.Advance(TimeSpan.FromSeconds(0.5));
        time.Timer.Fire();
        Assert.Equal(0, trims);
        Assert.Equal(TimeSpan.FromSeconds(1.5), time.Timer.Due);

        time.Advance(TimeSpan.FromSeconds(1.5));
        time.Timer.Fire();
        Assert.Equal(1, trims);
        Assert.Null(time.Timer.Due);
    }

    [Fact]
    public void Overlapping_requests_arm_the_trim_only_when_the_last_one_ends()
    {
        var time = new ManualTime();
        var trims = 0;
        using var trim = new IdleTrim(Quiet, () => trims++, time);

        trim.RequestStarted();
        trim.RequestStarted();
        trim.RequestEnded();
        Assert.Null(time.Timer.Due);
        trim.RequestEnded();
        Assert.Equal(Quiet, time.Timer.Due);

        time.Advance(Quiet);
        time.Timer.Fire();
        Assert.Equal(1, trims);
    }

    [Fact]
    public void CollectAndDecommit_lets_the_pools_idle_blocks_go()
    {
        var pools = new LargeBlockMemoryPoolFactory();
        using var pool = pools.Create();
        var kept = RentAndReturn(pool);

        IdleTrim.CollectAndDecommit(pools);

        // Without the pools' trim their idle queue would still hold the block.
        Assert.False(kept.IsAlive);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static WeakReference RentAndReturn(System.Buffers.MemoryPool<byte> pool)
    {
        var block = pool.Rent();
        block.Dispose(); // back to the pool's idle queue
        return new WeakReference(block);
    }

    /// <summary>A clock moved by hand and one timer fired by hand.</summary>
    private sealed class ManualTime : TimeProvider
    {
        private long _ticks;

        public ManualTimer Timer { get; } = new();

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            Timer.Callback = () => callback(state);
            Timer.Change(dueTime, period);
            return Timer;
        }
    }

    private sealed class ManualTimer : ITimer
    {
        public Action? Callback { get; set; }

        /// <summary>The time until it fires; null when it is not armed.</summary>
        public TimeSpan? Due { get; private set; }

        public int Changes { get; private set; }

        /// <summary>Fires it as the runtime would: the one-shot timer is disarmed, then its callback runs.</summary>
        public void Fire()
        {
            Assert.NotNull(Due);
            Due = null;
            Callback!();
        }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            Assert.Equal(Timeout.InfiniteTimeSpan, period);
            Changes++;
            Due = dueTime == Timeout.InfiniteTimeSpan ? null : dueTime;
            return true;
        }

        public void Dispose() => Due = null;

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
