using Paddock.Shared.Kestrel;

namespace Paddock.Agent.Hosting;

/// <summary>
/// Gives the agent's garbage-collected memory back to the kernel once no request has been in flight for
/// <see cref="QuietPeriod"/>: one compacting, decommitting collection per idle stretch.
/// </summary>
/// <remarks>
/// Why: a sandbox is idle most of its life, and its agent is then its only process, so the agent's private pages are
/// what an idle sandbox costs the host (issue 6 aims at under 5 MiB). After start-up and after each burst of calls the
/// GC keeps the regions it allocated in committed and dirty (gen0's budget: 2.5 MB with server GC, 4 MB with
/// workstation GC here); an aggressive collection compacts the survivors and decommits the rest. Measured on one
/// agent after `echo hi` (/proc/PID/smaps_rollup, Private_Dirty): 7.3 MB before the trim, 3.9 MB after
/// (workstation GC). Only the aggressive mode gives pages back: a forced gen0 or gen2 collection left 8.6-9.0 MB.
/// The collection is not free: 8-13 ms of agent CPU per trim here (schedstat of the agent's threads over the trim,
/// against an agent with the trim off; the first one, which also sets up the GC's bookkeeping, 15 ms), so the quiet
/// period is long enough that a sandbox between an agent loop's calls seldom pays it, and an idle one pays it once.
/// The timer is armed only when the last in-flight request ends (and once at start), and not re-armed after a trim
/// until another request comes: an agent that stays idle takes no wake-ups from it.
/// A request counts from when the middleware sees it to when its response (a whole output stream, for a Start) ends;
/// processes running with no request attached do not hold the trim off, which is harmless: a collection only pauses them.
/// </remarks>
internal sealed class IdleTrim : IDisposable
{
    /// <summary>Quiet time before the trim: longer than most gaps between an agent loop's calls, short against an idle sandbox's life.</summary>
    public static readonly TimeSpan DefaultQuietPeriod = TimeSpan.FromSeconds(10);

    private readonly TimeProvider _time;
    private readonly Action _trim;
    private readonly ITimer _timer;
    private int _inFlight;
    private long _lastActivity;
    private int _armed;
    private int _trims;

    /// <param name="quietPeriod">How long no request may be in flight before the trim.</param>
    /// <param name="trim">The trim; <see cref="CollectAndDecommit"/> outside tests.</param>
    /// <param name="time">The clock and timers; <see cref="TimeProvider.System"/> outside tests.</param>
    public IdleTrim(TimeSpan quietPeriod, Action trim, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(quietPeriod, TimeSpan.Zero);
        QuietPeriod = quietPeriod;
        _trim = trim;
        _time = time;
        _lastActivity = time.GetTimestamp();
        _timer = time.CreateTimer(static state => ((IdleTrim)state!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public TimeSpan QuietPeriod { get; }

    /// <summary>How many trims have run (for tests and diagnostics).</summary>
    public int Trims => Volatile.Read(ref _trims);

    /// <summary>
    /// Drops the buffers Kestrel's pools keep for reuse, then a blocking, compacting collection of every generation
    /// that also decommits the freed regions (<see cref="GCCollectionMode.Aggressive"/>; the other modes keep them
    /// committed for the next allocations).
    /// </summary>
    public static void CollectAndDecommit(LargeBlockMemoryPoolFactory pools)
    {
        pools.TrimIdle();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    /// <summary>Arms the first trim: start-up's allocations are as idle as any others once the agent waits for calls.</summary>
    public void Start() => Arm(QuietPeriod);

    /// <summary>The middleware: counts the request in flight while the rest of the pipeline runs.</summary>
    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        RequestStarted();
        try
        {
            await next(context);
        }
        finally
        {
            RequestEnded();
        }
    }

    /// <summary>Marks the start of a request (the half of <see cref="InvokeAsync"/> before the pipeline).</summary>
    internal void RequestStarted() => Interlocked.Increment(ref _inFlight);

    /// <summary>Marks the end of a request; the last one in flight arms the trim unless it is armed already.</summary>
    internal void RequestEnded()
    {
        Volatile.Write(ref _lastActivity, _time.GetTimestamp());
        if (Interlocked.Decrement(ref _inFlight) == 0)
        {
            Arm(QuietPeriod);
        }
    }

    private void Arm(TimeSpan due)
    {
        // One pending timer at most: a request ending while it is pending only moves _lastActivity, and the timer,
        // when it fires early, waits out the rest. Calls in a burst thus cost an interlocked exchange, not a timer change.
        if (Interlocked.Exchange(ref _armed, 1) == 0)
        {
            _timer.Change(due, Timeout.InfiniteTimeSpan);
        }
    }

    private void OnTimer()
    {
        Volatile.Write(ref _armed, 0);
        if (Volatile.Read(ref _inFlight) > 0)
        {
            return; // the request in flight arms the timer again when it ends
        }
        var quiet = _time.GetElapsedTime(Volatile.Read(ref _lastActivity));
        if (quiet < QuietPeriod)
        {
            Arm(QuietPeriod - quiet);
            return;
        }
        Interlocked.Increment(ref _trims);
        _trim();
    }

    public void Dispose() => _timer.Dispose();
}
