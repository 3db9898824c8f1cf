using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Tests.Sandboxes;

/// <summary>
/// The freezer's bookkeeping over a runtime double that records freezes and thaws and can hold a freeze half-way:
/// no freeze while a call is in flight, and a call that arrives while a freeze is in progress waits for it, then thaws.
/// </summary>
public sealed class IdleFreezerTests
{
    private const string Id = "sbx000000000000000001";

    [Fact]
    public async Task A_call_in_flight_keeps_the_sandbox_awake_and_an_idle_one_is_frozen()
    {
        var runtime = new FreezableRuntime();
        var freezer = NewFreezer(runtime, TimeSpan.FromMilliseconds(1));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));

        using (await freezer.HoldAwakeAsync(Id, timeout.Token))
        {
            await Task.Delay(20, timeout.Token);
            Assert.Equal(0, await freezer.SweepAsync(timeout.Token));
            Assert.Empty(runtime.Calls);
        }
        await Task.Delay(20, timeout.Token);
        Assert.Equal(1, await freezer.SweepAsync(timeout.Token));
        Assert.True(freezer.IsFrozen(Id));
        Assert.Equal(1, freezer.FrozenCount);

        using (await freezer.HoldAwakeAsync(Id, timeout.Token))
        {
            Assert.False(freezer.IsFrozen(Id));
            Assert.Equal(["freeze", "thaw"], runtime.Calls);
        }
        Assert.Equal(0, freezer.FrozenCount);
    }

    [Fact]
    public async Task A_call_during_a_freeze_waits_for_it_and_then_thaws()
    {
        var runtime = new FreezableRuntime { HoldFreeze = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) };
        var freezer = NewFreezer(runtime, TimeSpan.FromMilliseconds(1));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await Task.Delay(20, timeout.Token);
        // The first sweep sees the sandbox for the first time (idle from now); the second freezes it, and is held.
        await freezer.SweepAsync(timeout.Token);
        await Task.Delay(20, timeout.Token);
        var sweep = freezer.SweepAsync(timeout.Token);
        await runtime.FreezeStarted.Task.WaitAsync(timeout.Token);

        var call = freezer.HoldAwakeAsync(Id, timeout.Token).AsTask();
        await Task.Delay(50, timeout.Token);
        Assert.False(call.IsCompleted, "the call went ahead while the sandbox was being frozen");

        runtime.HoldFreeze.SetResult();
        Assert.Equal(1, await sweep.WaitAsync(timeout.Token));
        using (await call.WaitAsync(timeout.Token))
        {
            Assert.Equal(["freeze", "thaw"], runtime.Calls);
            Assert.False(freezer.IsFrozen(Id));
        }
    }

    [Fact]
    public async Task Nothing_is_frozen_when_a_process_besides_the_agent_runs_or_freezing_is_off()
    {
        var runtime = new FreezableRuntime { OnlyAgent = false };
        var freezer = NewFreezer(runtime, TimeSpan.FromMilliseconds(1));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await freezer.SweepAsync(timeout.Token);
        await Task.Delay(20, timeout.Token);
        Assert.Equal(0, await freezer.SweepAsync(timeout.Token));

        var off = NewFreezer(new FreezableRuntime(), TimeSpan.Zero);
        Assert.False(off.Enabled);
        using (await off.HoldAwakeAsync(Id, timeout.Token))
        {
            Assert.False(off.IsFrozen(Id));
        }
        Assert.Empty(runtime.Calls);
    }

    [Fact]
    public async Task A_sandbox_found_running_more_than_its_agent_is_asked_again_only_after_another_idle_time()
    {
        // On gVisor the question is a runsc process; a sandbox with a server running is not asked every sweep.
        var runtime = new FreezableRuntime { OnlyAgent = false };
        var clock = new ManualClock();
        var freezer = new IdleFreezer(runtime, new DaemonOptions { FreezeAfter = TimeSpan.FromSeconds(30) }, clock, NullLogger<IdleFreezer>.Instance, () => [Id]);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await freezer.SweepAsync(timeout.Token);
        clock.Advance(TimeSpan.FromSeconds(31));
        Assert.Equal(0, await freezer.SweepAsync(timeout.Token));
        Assert.Equal(1, runtime.Checks);

        runtime.OnlyAgent = true;
        clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(0, await freezer.SweepAsync(timeout.Token));
        Assert.Equal(1, runtime.Checks);
        clock.Advance(TimeSpan.FromSeconds(26));
        Assert.Equal(1, await freezer.SweepAsync(timeout.Token));
        Assert.Equal(2, runtime.Checks);
        Assert.True(freezer.IsFrozen(Id));
    }

    [Fact]
    public void The_sweep_period_is_half_the_idle_time_within_bounds()
    {
        Assert.Equal(TimeSpan.FromMilliseconds(500), IdleFreezer.SweepPeriod(TimeSpan.FromSeconds(1)));
        Assert.Equal(TimeSpan.FromSeconds(5), IdleFreezer.SweepPeriod(TimeSpan.FromSeconds(30)));
        Assert.Equal(TimeSpan.FromMilliseconds(100), IdleFreezer.SweepPeriod(TimeSpan.FromMilliseconds(10)));
    }

    [Fact]
    public void Freeze_after_is_parsed_from_the_flag_and_the_environment()
    {
        Assert.Equal(TimeSpan.FromSeconds(30), DaemonOptions.Parse([], _ => null).FreezeAfter);
        Assert.Equal(TimeSpan.FromMilliseconds(500), DaemonOptions.Parse(["--freeze-after", "0.5"], _ => null).FreezeAfter);
        Assert.Equal(TimeSpan.Zero, DaemonOptions.Parse([], n => n == "PADDOCK_FREEZE_AFTER" ? "0" : null).FreezeAfter);
        Assert.Throws<ArgumentException>(() => DaemonOptions.Parse(["--freeze-after", "-1"], _ => null));
        Assert.Throws<ArgumentException>(() => DaemonOptions.Parse(["--freeze-after", "soon"], _ => null));
    }

    private static IdleFreezer NewFreezer(ISandboxRuntime runtime, TimeSpan freezeAfter) =>
        new(runtime, new DaemonOptions { FreezeAfter = freezeAfter }, TimeProvider.System, NullLogger<IdleFreezer>.Instance, () => [Id]);

    /// <summary>Records SetFrozenAsync calls; a freeze can be held until the test releases it.</summary>
    private sealed class FreezableRuntime : ISandboxRuntime
    {
        public List<string> Calls { get; } = [];

        public bool OnlyAgent { get; set; } = true;

        public int Checks { get; private set; }

        public TaskCompletionSource? HoldFreeze { get; init; }

        public TaskCompletionSource FreezeStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string Name => "double";

        public ValueTask<bool> IsOnlyAgentRunningAsync(string sandboxId, CancellationToken cancellationToken)
        {
            Checks++;
            return ValueTask.FromResult(OnlyAgent);
        }

        public async Task<bool> SetFrozenAsync(string sandboxId, bool frozen, CancellationToken cancellationToken)
        {
            lock (Calls)
            {
                Calls.Add(frozen ? "freeze" : "thaw");
            }
            if (frozen)
            {
                FreezeStarted.TrySetResult();
                if (HoldFreeze is not null)
                {
                    await HoldFreeze.Task;
                }
            }
            return frozen;
        }

        public Task<RuntimeSandbox> StartAsync(SandboxSpec spec, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task DestroyAsync(string sandboxId, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<IReadOnlyList<RuntimeSandbox>> ListAsync(CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<IReadOnlyList<string>> CleanupLeftoversAsync(CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<SandboxUsage?> GetUsageAsync(string sandboxId, CancellationToken cancellationToken) => throw new NotSupportedException();

        public ValueTask<Stream> ConnectAsync(string sandboxId, int port, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<long> SnapshotFilesystemAsync(string sandboxId, string destination, CancellationToken cancellationToken) => throw new NotSupportedException();
    }

    /// <summary>A clock the test moves by hand.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Interlocked.Read(ref _ticks);

        public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
    }
}
