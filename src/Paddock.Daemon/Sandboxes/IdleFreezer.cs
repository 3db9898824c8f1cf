using System.Collections.Concurrent;
using System.Diagnostics;
using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// Freezes idle sandboxes and thaws them before anything reaches them (issue 6: 1,008 idle agents burned 0.65 of
/// this host's 2 cores just being idle, 38.5 ms of CPU per agent per minute, mostly Kestrel's 1 s heartbeat, which
/// cannot be turned off; note10.md). A sandbox is frozen when no daemon call to it has been in flight for
/// <see cref="DaemonOptions.FreezeAfter"/> and nothing but its agent runs in it (<see cref="ISandboxRuntime.IsOnlyAgentRunningAsync"/>):
/// no command, pty, server or daemonized child of the user, so nothing the user can see stops. A sandbox found with
/// more than its agent counts as active then, and is asked again only after another idle time: on gVisor the question
/// costs a runsc process.
/// </summary>
/// <remarks>
/// <para>
/// Every daemon→sandbox call holds a <see cref="Lease"/> (<see cref="HoldAwakeAsync"/>) for as long as it talks to the
/// sandbox: the proxy around the whole forward (a command's output or a watch stream keeps it awake to the end), the
/// template build and start commands, snapshots, and the kill. A lease on a frozen sandbox thaws it first.
/// </para>
/// <para>
/// The race between a lease and the sweep is closed by an interlocked in-flight count and phase per sandbox, each
/// side writing its own word before it reads the other's (a lease increments the count, then reads the phase; the
/// sweep marks the phase Freezing, then reads the count): either the sweep sees the lease and backs off, or the lease
/// sees Freezing or Frozen and waits on the sandbox's gate, which the sweep holds until its freeze has finished, and
/// then thaws. The common case, a lease on an awake sandbox, takes no lock.
/// </para>
/// <para>
/// One sweep for all sandboxes (<see cref="ExecuteAsync"/>, one timer): no per-sandbox threads or timers. Warm pool
/// members are never frozen: they are not in the live set until claimed, and their claim latency matters more.
/// While a sandbox is frozen its kernel state goes on: TCP connections from the daemon stay open (the proxy's client
/// drops pooled ones idle for 30 s, well before the agent's Kestrel would at 130 s, so a connection reused after a
/// thaw is never one Kestrel is about to close), and an inotify watcher of the polling API (CreateWatcher) keeps its
/// events queued in the kernel, where the agent reads them after the thaw.
/// </para>
/// </remarks>
internal sealed class IdleFreezer : BackgroundService
{
    private const int Awake = 0;
    private const int Freezing = 1;
    private const int Frozen = 2;

    private readonly ISandboxRuntime _runtime;
    private readonly TimeSpan _freezeAfter;
    private readonly TimeProvider _time;
    private readonly ILogger<IdleFreezer> _logger;
    private readonly Func<IEnumerable<string>> _liveSandboxes;
    private readonly ConcurrentDictionary<string, State> _states = new(StringComparer.Ordinal);
    private int _frozenCount;

    /// <param name="liveSandboxes">The ids of the claimed, running sandboxes (the manager's live set), read by each sweep.</param>
    public IdleFreezer(ISandboxRuntime runtime, DaemonOptions options, TimeProvider time, ILogger<IdleFreezer> logger, Func<IEnumerable<string>> liveSandboxes)
    {
        _runtime = runtime;
        _freezeAfter = options.FreezeAfter;
        _time = time;
        _logger = logger;
        _liveSandboxes = liveSandboxes;
    }

    /// <summary>Whether idle sandboxes are frozen at all (<c>--freeze-after 0</c>: never).</summary>
    public bool Enabled => _freezeAfter > TimeSpan.Zero;

    /// <summary>Sandboxes frozen now.</summary>
    public int FrozenCount => Volatile.Read(ref _frozenCount);

    /// <summary>Whether the freezer holds <paramref name="sandboxId"/> frozen now.</summary>
    public bool IsFrozen(string sandboxId) => _states.TryGetValue(sandboxId, out var s) && Volatile.Read(ref s.Phase) == Frozen;

    /// <summary>
    /// Keeps the sandbox awake until the lease is disposed: thaws it first when it is frozen (waiting for a freeze in
    /// progress to finish). Throws what the thaw throws (the sandbox's cgroup is unwritable); a sandbox that is gone is
    /// not an error here, the call that follows finds that out.
    /// </summary>
    public async ValueTask<Lease> HoldAwakeAsync(string sandboxId, CancellationToken cancellationToken)
    {
        if (!Enabled)
        {
            return default;
        }
        var state = Enter(sandboxId);
        try
        {
            if (Volatile.Read(ref state.Phase) != Awake)
            {
                await ThawAsync(sandboxId, state, cancellationToken);
            }
        }
        catch
        {
            Exit(state);
            throw;
        }
        return new Lease(this, state);
    }

    /// <summary>Counts a call in; retried when the sweep retired the sandbox's state meanwhile (see <see cref="Retire"/>).</summary>
    private State Enter(string sandboxId)
    {
        // Bounded: a retire that loses against this call puts the state back, so a retry finds it or a fresh one.
        for (var attempt = 0; ; attempt++)
        {
            var state = _states.GetOrAdd(sandboxId, static (_, now) => new State(now), _time.GetTimestamp());
            Interlocked.Increment(ref state.InFlight);
            if (Volatile.Read(ref state.Retired) == 0 || attempt >= 100)
            {
                return state;
            }
            Interlocked.Decrement(ref state.InFlight);
        }
    }

    private void Exit(State state)
    {
        // The idle time counts from the end of the last call: written before the count drops, so the sweep that
        // sees zero calls also sees when the last one ended.
        Volatile.Write(ref state.LastActivity, _time.GetTimestamp());
        Interlocked.Decrement(ref state.InFlight);
    }

    private async Task ThawAsync(string sandboxId, State state, CancellationToken cancellationToken)
    {
        await state.Gate.WaitAsync(cancellationToken);
        try
        {
            if (Volatile.Read(ref state.Phase) == Frozen)
            {
                var clock = Stopwatch.StartNew();
                await _runtime.SetFrozenAsync(sandboxId, frozen: false, CancellationToken.None);
                Volatile.Write(ref state.Phase, Awake);
                Interlocked.Decrement(ref _frozenCount);
                FreezerLog.Thawed(_logger, sandboxId, clock.Elapsed.TotalMilliseconds);
            }
        }
        finally
        {
            state.Gate.Release();
        }
    }

    /// <summary>The sweep: every <see cref="SweepPeriod"/>, freezes the live sandboxes that have been idle long enough.</summary>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!Enabled)
        {
            return;
        }
        using var timer = new PeriodicTimer(SweepPeriod(_freezeAfter), _time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    await SweepAsync(stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    FreezerLog.SweepFailed(_logger, ex);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
    }

    /// <summary>
    /// Half the idle time, at most 5 s: a sandbox is frozen between 1x and 1.5x its idle time after its last call,
    /// and with nothing to freeze a sweep of 1,000 sandboxes is 1,000 dictionary reads.
    /// </summary>
    internal static TimeSpan SweepPeriod(TimeSpan freezeAfter) =>
        TimeSpan.FromMilliseconds(Math.Clamp(freezeAfter.TotalMilliseconds / 2, 100, 5000));

    /// <summary>One pass over the live sandboxes (also called by tests); returns how many it froze.</summary>
    internal async Task<int> SweepAsync(CancellationToken cancellationToken)
    {
        var live = new HashSet<string>(_liveSandboxes(), StringComparer.Ordinal);
        var now = _time.GetTimestamp();
        var froze = 0;
        foreach (var id in live)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var state = _states.GetOrAdd(id, static (_, t) => new State(t), now);
            if (Volatile.Read(ref state.Phase) != Awake || Volatile.Read(ref state.InFlight) != 0
                || _time.GetElapsedTime(Volatile.Read(ref state.LastActivity)) < _freezeAfter)
            {
                continue;
            }
            if (await TryFreezeAsync(id, state))
            {
                froze++;
            }
        }
        // States of sandboxes that left the live set (killed; their kill held a lease, so none is frozen).
        foreach (var (id, state) in _states)
        {
            if (!live.Contains(id))
            {
                Retire(id, state);
            }
        }
        if (froze > 0)
        {
            FreezerLog.Swept(_logger, froze, FrozenCount, live.Count);
        }
        return froze;
    }

    private async Task<bool> TryFreezeAsync(string sandboxId, State state)
    {
        if (!state.Gate.Wait(0))
        {
            return false; // a call is thawing it right now
        }
        try
        {
            Interlocked.Exchange(ref state.Phase, Freezing);
            // A call that counted itself in before the phase changed is seen here; one after it waits on the gate.
            if (Volatile.Read(ref state.InFlight) != 0 || Volatile.Read(ref state.Retired) != 0)
            {
                Volatile.Write(ref state.Phase, Awake);
                return false;
            }
            if (!await OnlyAgentRunsAsync(sandboxId))
            {
                Volatile.Write(ref state.LastActivity, _time.GetTimestamp());
                Volatile.Write(ref state.Phase, Awake);
                return false;
            }
            var clock = Stopwatch.StartNew();
            bool frozen;
            try
            {
                // Not cancellable: a freeze cut short must still end thawed, which the runtime does itself.
                frozen = await _runtime.SetFrozenAsync(sandboxId, frozen: true, CancellationToken.None);
            }
            catch (Exception ex)
            {
                // The sandbox went away meanwhile, or its cgroup could not be written: leave it awake.
                FreezerLog.FreezeFailed(_logger, sandboxId, ex);
                Volatile.Write(ref state.Phase, Awake);
                return false;
            }
            if (!frozen)
            {
                FreezerLog.FreezeGaveUp(_logger, sandboxId);
                Volatile.Write(ref state.Phase, Awake);
                return false;
            }
            Interlocked.Increment(ref _frozenCount);
            Volatile.Write(ref state.Phase, Frozen);
            FreezerLog.Frozen(_logger, sandboxId, clock.Elapsed.TotalMilliseconds);
            return true;
        }
        finally
        {
            state.Gate.Release();
        }
    }

    /// <summary>
    /// The runtime's answer, bounded: a call that arrives meanwhile waits on the sandbox's gate, so a runtime that
    /// cannot answer within 5 s counts as "something else runs".
    /// </summary>
    private async Task<bool> OnlyAgentRunsAsync(string sandboxId)
    {
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            return await _runtime.IsOnlyAgentRunningAsync(sandboxId, bound.Token);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Drops the state of a sandbox that is no longer live, unless a call holds it (the same two-word handshake as the freeze).</summary>
    private void Retire(string sandboxId, State state)
    {
        Interlocked.Exchange(ref state.Retired, 1);
        if (Volatile.Read(ref state.InFlight) == 0)
        {
            _states.TryRemove(new KeyValuePair<string, State>(sandboxId, state));
            if (Volatile.Read(ref state.Phase) == Frozen)
            {
                // Not reachable through a kill (it holds a lease); only if something removed it from the live set otherwise.
                Interlocked.Decrement(ref _frozenCount);
            }
        }
        else
        {
            Interlocked.Exchange(ref state.Retired, 0);
        }
    }

    /// <summary>Stops the sweep, then thaws what it froze: a stopped daemon leaves its sandboxes as a client last saw them.</summary>
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        var thawed = 0;
        foreach (var (id, state) in _states)
        {
            if (Volatile.Read(ref state.Phase) == Awake)
            {
                continue;
            }
            try
            {
                using var lease = await HoldAwakeAsync(id, cancellationToken);
                thawed++;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                FreezerLog.ThawFailed(_logger, id, ex);
            }
        }
        if (thawed > 0)
        {
            FreezerLog.ThawedAtStop(_logger, thawed);
        }
    }

    /// <summary>One sandbox's freeze bookkeeping; its fields are read and written with Interlocked/Volatile only.</summary>
    internal sealed class State(long now)
    {
        public int InFlight;
        public int Phase;
        public int Retired;
        public long LastActivity = now;
        public readonly SemaphoreSlim Gate = new(1, 1);
    }

    /// <summary>A call in flight to a sandbox: it is not frozen until every lease is disposed. The default lease holds nothing.</summary>
    internal readonly struct Lease : IDisposable
    {
        private readonly IdleFreezer? _owner;
        private readonly State? _state;

        internal Lease(IdleFreezer owner, State state)
        {
            _owner = owner;
            _state = state;
        }

        public void Dispose()
        {
            if (_state is not null)
            {
                _owner!.Exit(_state);
            }
        }
    }
}
