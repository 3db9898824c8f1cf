using System.Collections.Concurrent;
using System.Security.Cryptography;
using Paddock.Envd.Connect;
using Paddock.Envd.Filesystem;

namespace Paddock.Agent.Filesystem;

/// <summary>
/// The watchers of the polling API (CreateWatcher / GetWatcherEvents / RemoveWatcher), for clients that cannot keep
/// a stream open. Limits, so that forgotten watchers cannot exhaust the sandbox:
/// at most <see cref="WatcherLimits.MaxWatchers"/> at once (each holds an inotify instance and a thread; the
/// kernel's default fs.inotify.max_user_instances is 128 for all of a user's processes); each queues at most
/// <see cref="WatcherLimits.QueueCapacity"/> events between polls, after which it fails with resource_exhausted
/// (events were lost) at the next poll and is removed; and one not polled for <see cref="WatcherLimits.IdleTimeout"/> is removed.
/// </summary>
internal sealed class WatcherRegistry : IDisposable
{
    private readonly ConcurrentDictionary<string, Watcher> _watchers = new(StringComparer.Ordinal);
    private readonly WatcherLimits _limits;
    private readonly ILogger _log;
    private readonly Timer _sweeper;
    private readonly TimeSpan _sweepPeriod;
    private readonly Lock _createGate = new();
    private bool _sweeping; // guarded by _createGate

    public WatcherRegistry(WatcherLimits limits, ILogger log)
    {
        _limits = limits;
        _log = log;
        _sweepPeriod = limits.IdleTimeout < TimeSpan.FromMinutes(1) ? limits.IdleTimeout : TimeSpan.FromMinutes(1);
        // Started by the first watcher and stopped when none is left: an agent with no watcher takes no wake-ups
        // from it (issue 6: idle agents wake for Kestrel's heartbeat only).
        _sweeper = new Timer(_ => RemoveIdle(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public int Count => _watchers.Count;

    public string Create(string root, WatchOptions options, EntryInfos infos)
    {
        lock (_createGate)
        {
            if (_watchers.Count >= _limits.MaxWatchers)
            {
                throw new ConnectException(ConnectCode.ResourceExhausted, $"too many watchers: at most {_limits.MaxWatchers} may exist at once; remove some with RemoveWatcher");
            }
            var watch = DirectoryWatch.Start(root, options with { Capacity = _limits.QueueCapacity }, infos);
            var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
            _watchers[id] = new Watcher(watch);
            if (!_sweeping)
            {
                _sweeping = true;
                _sweeper.Change(_sweepPeriod, _sweepPeriod);
            }
            FilesystemLog.WatcherCreated(_log, id, root);
            return id;
        }
    }

    /// <summary>
    /// Takes the queued events. After a queue overflow, answers resource_exhausted at once and removes the watcher;
    /// when the watch ended otherwise (directory removed), answers with the reason once its events are all taken.
    /// </summary>
    public List<FilesystemEvent> Drain(string id)
    {
        var watcher = Find(id);
        watcher.Touch();
        if (watcher.Watch.Failure is { Code: ConnectCode.ResourceExhausted } overflow)
        {
            // Events were lost: what is queued is no longer the whole story, so the client learns at once that it
            // must start over (new watcher, rescan) rather than after reading a stale queue.
            if (_watchers.TryRemove(id, out var lost))
            {
                lost.Watch.Dispose();
            }
            throw overflow;
        }
        var events = new List<FilesystemEvent>();
        var reader = watcher.Watch.Events;
        // Bounded by the queue size: the watch thread may keep adding while this runs.
        while (events.Count < _limits.QueueCapacity && reader.TryRead(out var ev))
        {
            events.Add(ev);
        }
        if (events.Count == 0 && reader.Completion.IsCompleted)
        {
            if (_watchers.TryRemove(id, out var ended))
            {
                ended.Watch.Dispose();
            }
            if (reader.Completion.Exception?.InnerException is ConnectException error)
            {
                throw error;
            }
            throw new ConnectException(ConnectCode.NotFound, $"watcher '{id}' has ended");
        }
        return events;
    }

    public void Remove(string id)
    {
        if (!_watchers.TryRemove(id, out var watcher))
        {
            throw NotFound(id);
        }
        watcher.Watch.Dispose();
        FilesystemLog.WatcherRemoved(_log, id);
    }

    public void Dispose()
    {
        _sweeper.Dispose();
        foreach (var id in _watchers.Keys)
        {
            if (_watchers.TryRemove(id, out var watcher))
            {
                watcher.Watch.Dispose();
            }
        }
    }

    private Watcher Find(string id) => _watchers.TryGetValue(id, out var watcher) ? watcher : throw NotFound(id);

    private static ConnectException NotFound(string id) =>
        new(ConnectCode.NotFound, $"watcher '{id}' does not exist (removed, idle too long, or never created)");

    private void RemoveIdle()
    {
        var now = Environment.TickCount64;
        foreach (var (id, watcher) in _watchers)
        {
            if (now - watcher.LastUsed > (long)_limits.IdleTimeout.TotalMilliseconds && _watchers.TryRemove(id, out _))
            {
                watcher.Watch.Dispose();
                FilesystemLog.WatcherExpired(_log, id, _limits.IdleTimeout);
            }
        }
        lock (_createGate)
        {
            if (_watchers.IsEmpty && _sweeping)
            {
                _sweeping = false;
                _sweeper.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            }
        }
    }

    private sealed class Watcher
    {
        private long _lastUsed = Environment.TickCount64;

        public Watcher(DirectoryWatch watch)
        {
            Watch = watch;
        }

        public DirectoryWatch Watch { get; }

        public long LastUsed => Interlocked.Read(ref _lastUsed);

        public void Touch() => Interlocked.Exchange(ref _lastUsed, Environment.TickCount64);
    }
}

/// <summary>Limits of the polling watchers (see <see cref="WatcherRegistry"/>).</summary>
internal sealed record WatcherLimits
{
    public int MaxWatchers { get; init; } = 64;

    public int QueueCapacity { get; init; } = 4096;

    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(10);
}
