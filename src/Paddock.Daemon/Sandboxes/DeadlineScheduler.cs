namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// Every sandbox deadline in one priority queue, served by one loop: the loop sleeps until the earliest deadline (or
/// until an earlier one is added) and hands due sandboxes to the expiry callback. One loop instead of a timer per
/// sandbox keeps the cost of a thousand idle sandboxes at one sleeping task. Moving a deadline does not search the
/// queue: the new entry is pushed and the old one is recognised as stale when it comes up.
/// </summary>
internal sealed class DeadlineScheduler : BackgroundService
{
    // Task.Delay cannot sleep longer than about 49 days.
    private static readonly TimeSpan MaxSleep = TimeSpan.FromMinutes(10);

    private readonly Lock _gate = new();
    private readonly PriorityQueue<string, DateTimeOffset> _queue = new();
    private readonly Dictionary<string, DateTimeOffset> _deadlines = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly TimeProvider _time;
    private readonly Func<string, CancellationToken, Task> _onDue;
    private readonly Func<CancellationToken, Task>? _housekeeping;
    private readonly TimeSpan _housekeepingPeriod;
    private readonly ILogger _logger;

    /// <param name="housekeeping">Run every <paramref name="housekeepingPeriod"/> on the same loop (finding lost sandboxes, purging old records).</param>
    public DeadlineScheduler(TimeProvider time, ILogger<DeadlineScheduler> logger, Func<string, CancellationToken, Task> onDue,
        Func<CancellationToken, Task>? housekeeping = null, TimeSpan? housekeepingPeriod = null)
    {
        _time = time;
        _logger = logger;
        _onDue = onDue;
        _housekeeping = housekeeping;
        _housekeepingPeriod = housekeepingPeriod ?? TimeSpan.FromSeconds(30);
    }

    /// <summary>Deadlines waiting (for tests and diagnostics).</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _deadlines.Count;
            }
        }
    }

    /// <summary>Sets (or moves) the deadline of <paramref name="sandboxId"/>.</summary>
    public void Schedule(string sandboxId, DateTimeOffset deadline)
    {
        bool earliest;
        lock (_gate)
        {
            _deadlines[sandboxId] = deadline;
            _queue.Enqueue(sandboxId, deadline);
            earliest = _queue.TryPeek(out _, out var first) && first == deadline;
            // Stale entries would otherwise pile up when a client moves one deadline many times.
            if (_queue.Count > 2 * _deadlines.Count + 64)
            {
                Compact();
            }
        }
        if (earliest)
        {
            Wake();
        }
    }

    /// <summary>Forgets the deadline of <paramref name="sandboxId"/> (it was killed some other way).</summary>
    public void Cancel(string sandboxId)
    {
        lock (_gate)
        {
            _deadlines.Remove(sandboxId);
        }
    }

    public bool TryGetDeadline(string sandboxId, out DateTimeOffset deadline)
    {
        lock (_gate)
        {
            return _deadlines.TryGetValue(sandboxId, out deadline);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var nextHousekeeping = _time.GetUtcNow();
        while (!stoppingToken.IsCancellationRequested)
        {
            var now = _time.GetUtcNow();
            List<string>? due = null;
            TimeSpan sleep;
            lock (_gate)
            {
                while (_queue.TryPeek(out var id, out var deadline) && deadline <= now)
                {
                    _queue.Dequeue();
                    // Only the entry that matches the current deadline counts; others were moved or cancelled.
                    if (_deadlines.TryGetValue(id, out var current) && current == deadline)
                    {
                        _deadlines.Remove(id);
                        (due ??= []).Add(id);
                    }
                }
                sleep = _queue.TryPeek(out _, out var next) ? next - now : MaxSleep;
            }
            if (due is not null)
            {
                foreach (var id in due)
                {
                    // Expiries run concurrently: one slow destroy must not hold back the next deadline.
                    _ = ExpireAsync(id, stoppingToken);
                }
            }
            if (_housekeeping is not null && now >= nextHousekeeping)
            {
                nextHousekeeping = now + _housekeepingPeriod;
                try
                {
                    await _housekeeping(stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    SandboxesLog.HousekeepingFailed(_logger, ex);
                }
            }
            if (_housekeeping is not null && nextHousekeeping - now < sleep)
            {
                sleep = nextHousekeeping - now;
            }
            if (sleep > MaxSleep)
            {
                sleep = MaxSleep;
            }
            if (sleep > TimeSpan.Zero)
            {
                try
                {
                    await _wake.WaitAsync(sleep, stoppingToken);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
            }
        }
    }

    private async Task ExpireAsync(string sandboxId, CancellationToken stoppingToken)
    {
        try
        {
            await _onDue(sandboxId, stoppingToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
        {
            SandboxesLog.ExpiryFailed(_logger, sandboxId, ex);
        }
    }

    private void Wake()
    {
        try
        {
            _wake.Release();
        }
        catch (SemaphoreFullException)
        {
            // Already signalled; one wake-up is enough to re-read the queue.
        }
    }

    private void Compact()
    {
        _queue.Clear();
        foreach (var (id, deadline) in _deadlines)
        {
            _queue.Enqueue(id, deadline);
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        _wake.Dispose();
    }
}
