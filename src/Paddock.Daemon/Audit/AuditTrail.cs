using System.Collections.Concurrent;
using System.Threading.Channels;
using Paddock.Daemon.Observability;

namespace Paddock.Daemon.Audit;

/// <summary>
/// Takes audit events from the proxy (and later the egress guard) without waiting for the disk: a bounded queue and one
/// writer that stores them in batches, one transaction per batch. A full queue drops the event and counts it as dropped
/// for its sandbox (the trail then says how many are missing), so a flood slows nothing down and cannot grow memory.
/// <see cref="FlushAsync"/> waits until everything recorded before it is stored: a read of the trail sees every
/// call that was answered before the read began.
/// </summary>
internal sealed class AuditTrail : BackgroundService
{
    /// <summary>Events waiting for the writer at most; ~1 KiB each, so a few MiB at worst.</summary>
    internal const int QueueCapacity = 8192;

    private const int MaxBatch = 512;

    /// <summary>
    /// How long the writer gathers events before a transaction. A command makes two events (start, end) a few ms apart;
    /// written one transaction each, they cost the exec round trip ~25-30% on this loaded 2-core host (bench/run daemon
    /// --observe on|off, 2026-12-06, bench/README.md); gathered, a transaction carries many. Reads do not wait for it:
    /// <see cref="FlushAsync"/> wakes the writer at once.
    /// </summary>
    internal static readonly TimeSpan GatherDelay = TimeSpan.FromMilliseconds(100);

    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private readonly Channel<Item> _queue = Channel.CreateBounded<Item>(new BoundedChannelOptions(QueueCapacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait,
    });

    private readonly ConcurrentDictionary<string, long> _lost = new(StringComparer.Ordinal);
    private readonly IAuditStore _store;
    private readonly DaemonOptions _options;
    private readonly DaemonMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<AuditTrail> _logger;

    public AuditTrail(IAuditStore store, DaemonOptions options, DaemonMetrics metrics, TimeProvider time, ILogger<AuditTrail> logger)
    {
        _store = store;
        _options = options;
        _metrics = metrics;
        _time = time;
        _logger = logger;
    }

    public bool Enabled => _options.AuditMaxEventsPerSandbox > 0;

    public DateTimeOffset Now => _time.GetUtcNow();

    /// <summary>Queues an event; never blocks. A full queue counts the event as dropped for its sandbox.</summary>
    public void Record(string sandboxId, string teamId, AuditEvent e)
    {
        if (!Enabled)
        {
            return;
        }
        if (_queue.Writer.TryWrite(new Item(new PendingAuditEvent(sandboxId, teamId, e), null)))
        {
            _metrics.AuditRecorded(e.Kind);
            return;
        }
        _lost.AddOrUpdate(sandboxId, 1, (_, n) => n + 1);
        _metrics.AuditDropped("queue-full");
    }

    /// <summary>Waits until every event queued before this call is in the store.</summary>
    public async Task FlushAsync(CancellationToken cancellationToken)
    {
        if (!Enabled)
        {
            return;
        }
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await _queue.Writer.WriteAsync(new Item(default, done), cancellationToken);
        Volatile.Read(ref _wake).TrySetResult();
        await done.Task.WaitAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var batch = new List<PendingAuditEvent>(MaxBatch);
        var flushes = new List<TaskCompletionSource>();
        var reader = _queue.Reader;
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                if (reader.Count < MaxBatch)
                {
                    // Gather more, unless a reader is waiting (FlushAsync wakes this at once).
                    await Task.WhenAny(Task.Delay(GatherDelay, stoppingToken), Volatile.Read(ref _wake).Task);
                }
                Volatile.Write(ref _wake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
                while (batch.Count < MaxBatch && reader.TryRead(out var item))
                {
                    if (item.Flushed is { } flush)
                    {
                        flushes.Add(flush);
                    }
                    else
                    {
                        batch.Add(item.Event);
                    }
                }
                await WriteAsync(batch, CancellationToken.None);
                foreach (var flush in flushes)
                {
                    flush.TrySetResult();
                }
                batch.Clear();
                flushes.Clear();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutting down: what is still queued is written below.
        }
        while (reader.TryRead(out var item))
        {
            if (item.Flushed is { } flush)
            {
                flushes.Add(flush);
            }
            else
            {
                batch.Add(item.Event);
            }
        }
        await WriteAsync(batch, CancellationToken.None);
        foreach (var flush in flushes)
        {
            flush.TrySetResult();
        }
    }

    private async Task WriteAsync(List<PendingAuditEvent> batch, CancellationToken cancellationToken)
    {
        var lost = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var id in _lost.Keys)
        {
            if (_lost.TryRemove(id, out var n))
            {
                lost[id] = n;
            }
        }
        if (batch.Count == 0 && lost.Count == 0)
        {
            return;
        }
        try
        {
            var dropped = await _store.AppendAsync(batch, lost, _options.AuditMaxEventsPerSandbox, cancellationToken);
            if (dropped > 0)
            {
                _metrics.AuditDropped("bound", dropped);
            }
        }
        catch (Exception ex)
        {
            // The store failing (disk full, database locked for 30 s) must not stop the daemon; the events are counted lost.
            AuditLog.WriteFailed(_logger, batch.Count, ex);
            foreach (var e in batch)
            {
                _lost.AddOrUpdate(e.SandboxId, 1, (_, n) => n + 1);
            }
            foreach (var (id, n) in lost)
            {
                _lost.AddOrUpdate(id, n, (_, m) => m + n);
            }
            _metrics.AuditDropped("store-failed", batch.Count);
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _queue.Writer.TryComplete();
        await base.StopAsync(cancellationToken);
    }

    private readonly record struct Item(PendingAuditEvent Event, TaskCompletionSource? Flushed);
}

internal static partial class AuditLog
{
    [LoggerMessage(EventId = 2001, Level = LogLevel.Error, Message = "could not store {Count} audit events; they are counted as dropped")]
    public static partial void WriteFailed(ILogger logger, int count, Exception exception);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Warning, Message = "a connection of sandbox {SandboxId} could not be recorded: its team could not be read")]
    public static partial void ConnectionUnrecorded(ILogger logger, string sandboxId, Exception exception);
}
