using System.Collections.Concurrent;
using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// A short history of each running sandbox's resource use, so that <c>GET /sandboxes/{id}/metrics?start=&amp;end=</c>
/// (the SDK's <c>getMetrics({start, end})</c>) answers the samples in that range, as E2B's does, instead of one sample
/// of now. A sweep every <see cref="DaemonOptions.MetricsInterval"/> samples every running sandbox through the
/// runtime; each keeps its last <see cref="DaemonOptions.MetricsSamples"/> samples in memory (the history does not
/// survive a daemon restart, and goes with the sandbox).
/// </summary>
/// <remarks>
/// What a sample costs is the runtime's <c>GetUsageAsync</c>: a few cgroup files and a walk of the sandbox's writable
/// layer (its disk use). The default interval, 5 s, is E2B's own sampling period; <c>--metrics-interval 0</c> turns the
/// sweep off, and then only the on-demand sample of each request is recorded.
/// </remarks>
internal sealed class MetricsHistory : BackgroundService
{
    private readonly ISandboxRuntime _runtime;
    private readonly TimeSpan _interval;
    private readonly int _capacity;
    private readonly TimeProvider _time;
    private readonly ILogger<MetricsHistory> _logger;
    private readonly Func<IEnumerable<string>> _liveSandboxes;
    private readonly ConcurrentDictionary<string, Ring> _history = new(StringComparer.Ordinal);

    /// <param name="liveSandboxes">The ids of the claimed, running sandboxes (the manager's live set), read by each sweep.</param>
    public MetricsHistory(ISandboxRuntime runtime, DaemonOptions options, TimeProvider time, ILogger<MetricsHistory> logger, Func<IEnumerable<string>> liveSandboxes)
    {
        _runtime = runtime;
        _interval = options.MetricsInterval;
        _capacity = options.MetricsSamples;
        _time = time;
        _logger = logger;
        _liveSandboxes = liveSandboxes;
    }

    /// <summary>Keeps <paramref name="usage"/> in the sandbox's history (the sweep's samples and each on-demand one).</summary>
    public void Record(string sandboxId, SandboxUsage usage) =>
        _history.GetOrAdd(sandboxId, _ => new Ring(_capacity)).Add(usage);

    /// <summary>
    /// The kept samples of a sandbox with <paramref name="start"/> &lt;= timestamp &lt;= <paramref name="end"/> (either
    /// bound optional), oldest first. Compared in whole Unix seconds, the unit of the API's bounds and of a metric's
    /// <c>timestampUnix</c>: an end of "now" in seconds includes a sample taken later within that second.
    /// </summary>
    public IReadOnlyList<SandboxUsage> Samples(string sandboxId, DateTimeOffset? start, DateTimeOffset? end)
    {
        if (!_history.TryGetValue(sandboxId, out var ring))
        {
            return [];
        }
        var from = start?.ToUnixTimeSeconds() ?? long.MinValue;
        var to = end?.ToUnixTimeSeconds() ?? long.MaxValue;
        return ring.Snapshot().Where(s => s.Timestamp.ToUnixTimeSeconds() >= from && s.Timestamp.ToUnixTimeSeconds() <= to).ToList();
    }

    /// <summary>Drops a sandbox's history (it ended).</summary>
    public void Forget(string sandboxId) => _history.TryRemove(sandboxId, out _);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_interval <= TimeSpan.Zero)
        {
            return;
        }
        using var timer = new PeriodicTimer(_interval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                await SweepAsync(stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    /// <summary>One sample of every live sandbox; the histories of sandboxes no longer live are dropped.</summary>
    internal async Task SweepAsync(CancellationToken cancellationToken)
    {
        var live = _liveSandboxes().ToHashSet(StringComparer.Ordinal);
        foreach (var id in _history.Keys.Where(id => !live.Contains(id)))
        {
            Forget(id);
        }
        foreach (var id in live)
        {
            try
            {
                if (await _runtime.GetUsageAsync(id, cancellationToken) is { } usage && live.Contains(id))
                {
                    Record(id, usage);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidOperationException)
            {
                // A sandbox torn down between the live set and its cgroup read: its next sweep drops it.
                SandboxesLog.MetricsSampleFailed(_logger, id, ex.Message);
            }
        }
    }

    /// <summary>A fixed number of the latest samples; one lock per sandbox, taken for a copy or an append.</summary>
    private sealed class Ring(int capacity)
    {
        private readonly Queue<SandboxUsage> _samples = new(capacity);
        private DateTimeOffset _newest = DateTimeOffset.MinValue;

        public void Add(SandboxUsage usage)
        {
            lock (_samples)
            {
                // Timestamps ascend: an on-demand sample may race a sweep's, and the older of the two is dropped.
                if (usage.Timestamp <= _newest)
                {
                    return;
                }
                _newest = usage.Timestamp;
                if (_samples.Count == capacity)
                {
                    _samples.Dequeue();
                }
                _samples.Enqueue(usage);
            }
        }

        public SandboxUsage[] Snapshot()
        {
            lock (_samples)
            {
                return [.. _samples];
            }
        }
    }
}
