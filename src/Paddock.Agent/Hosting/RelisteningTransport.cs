using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;

namespace Paddock.Agent.Hosting;

/// <summary>
/// Kestrel's socket transport, with its TCP listeners bound again (a new listening socket on the same endpoint) after
/// a gVisor restore, and whenever accepting ends without a connection while the server runs.
/// Why (issue 15, measured with the SDK's memory-resume case, runsc 2024-07-29): after <c>runsc restore</c> of a
/// sandbox checkpointed with connections open, the restored netstack completes the handshake of every new connection
/// to the agent's port and acknowledges its request, but the accept that was pending at the checkpoint never completes:
/// a trace of every accept showed the last "accept waiting" before the checkpoint and nothing after it, while the
/// process's timers ran on and the connections open at the checkpoint were reported aborted (ECONNABORTED). Accept
/// never returned null or failed (logged here in 4 failing runs of 8: no such outcome), so Kestrel's accept loop did
/// not end; the listening socket simply stops reporting connections. A fresh listening socket does not have that
/// problem. The restore itself is seen from inside as a stall of the process (<see cref="RestoreWatch"/>).
/// </summary>
internal sealed class RelisteningTransportFactory(IConnectionListenerFactory inner, ILogger logger) : IConnectionListenerFactory
{
    private readonly Lock _gate = new();
    private readonly List<RelisteningListener> _listeners = [];

    public async ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var listener = await inner.BindAsync(endpoint, cancellationToken);
        // Only TCP endpoints: binding a Unix socket again would need its file removed and restricted again (H2cHandoff).
        if (listener.EndPoint is not IPEndPoint)
        {
            return listener;
        }
        var relistening = new RelisteningListener(inner, listener, logger);
        lock (_gate)
        {
            _listeners.Add(relistening);
        }
        return relistening;
    }

    /// <summary>Closes every TCP listening socket; each listener's accept loop then binds a new one (see the class).</summary>
    public async Task RebindAllAsync()
    {
        RelisteningListener[] listeners;
        lock (_gate)
        {
            listeners = [.. _listeners];
        }
        foreach (var listener in listeners)
        {
            await listener.CloseCurrentAsync();
        }
    }

    private sealed class RelisteningListener(IConnectionListenerFactory factory, IConnectionListener first, ILogger logger) : IConnectionListener
    {
        /// <summary>Bounds the binds in a row that end without a connection accepted in between (then the endpoint is given up, as before).</summary>
        private const int MaxRebindsInARow = 20;

        private static readonly TimeSpan RebindDelay = TimeSpan.FromMilliseconds(200);

        private readonly Lock _gate = new();
        private IConnectionListener _current = first;
        private bool _stopping;

        public EndPoint EndPoint { get; } = first.EndPoint;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            for (var rebinds = 0; ; rebinds++)
            {
                IConnectionListener listener;
                lock (_gate)
                {
                    listener = _current;
                }
                Exception? error = null;
                try
                {
                    var connection = await listener.AcceptAsync(cancellationToken);
                    if (connection is not null)
                    {
                        return connection;
                    }
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    error = ex;
                }
                if (IsStopping || cancellationToken.IsCancellationRequested)
                {
                    return null;
                }
                var socketError = (error as SocketException)?.SocketErrorCode.ToString() ?? "none";
                var errno = (error as SocketException)?.NativeErrorCode ?? 0;
                HostingLog.AcceptEnded(logger, EndPoint, error?.GetType().Name ?? "null", socketError, errno, error);
                if (rebinds >= MaxRebindsInARow)
                {
                    HostingLog.RebindGaveUp(logger, EndPoint, rebinds);
                    return null;
                }
                if (rebinds > 0)
                {
                    await Task.Delay(RebindDelay, cancellationToken);
                }
                await listener.DisposeAsync();
                IConnectionListener next;
                try
                {
                    next = await factory.BindAsync(EndPoint, cancellationToken);
                }
                catch (Exception ex) when (ex is SocketException or IOException or AddressInUseException)
                {
                    HostingLog.RebindFailed(logger, EndPoint, ex);
                    continue;
                }
                var stale = false;
                lock (_gate)
                {
                    stale = _stopping;
                    _current = next;
                }
                if (stale)
                {
                    await next.DisposeAsync();
                    return null;
                }
                HostingLog.Rebound(logger, EndPoint);
                rebinds = -1; // a fresh bind: the count starts again (the next failure is the first in a row)
            }
        }

        private bool IsStopping
        {
            get
            {
                lock (_gate)
                {
                    return _stopping;
                }
            }
        }

        /// <summary>Closes the current listening socket unless the server is stopping: the pending accept ends, and <see cref="AcceptAsync"/> binds again.</summary>
        public async ValueTask CloseCurrentAsync()
        {
            IConnectionListener listener;
            lock (_gate)
            {
                if (_stopping)
                {
                    return;
                }
                listener = _current;
            }
            await listener.DisposeAsync();
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            IConnectionListener listener;
            lock (_gate)
            {
                _stopping = true;
                listener = _current;
            }
            return listener.UnbindAsync(cancellationToken);
        }

        public ValueTask DisposeAsync()
        {
            IConnectionListener listener;
            lock (_gate)
            {
                _stopping = true;
                listener = _current;
            }
            return listener.DisposeAsync();
        }
    }
}

/// <summary>
/// Notices that the process was frozen (a gVisor checkpoint and restore, issue 15) and binds the listeners again. A
/// restored process gets no signal; what it can see is that a one-second timer fired far too late, by the wall clock or
/// by the monotonic clock (gVisor may restore either to continue from the checkpoint). Measured in a failing resume:
/// the agent's 2 s timer fired 2 s late after a 2 s pause. A machine so loaded that the timer is
/// <see cref="StallThreshold"/> late also rebinds (connections already accepted are kept; one waiting in the old
/// socket's queue is reset), so the watch runs under gVisor only (<see cref="IsGvisor"/>): on runc a sandbox frozen by
/// the cgroup freezer and thawed for a request would see a stall exactly when that request's connection waits.
/// </summary>
internal sealed class RestoreWatch(RelisteningTransportFactory transport, ILogger logger, TimeProvider time) : IDisposable
{
    public static readonly TimeSpan Period = TimeSpan.FromSeconds(1);

    public static readonly TimeSpan StallThreshold = TimeSpan.FromSeconds(1.5);

    private readonly CancellationTokenSource _stop = new();

    /// <summary>gVisor's /proc/version names a fixed build of its own (its emulated 4.4.0 kernel), unlike any real kernel's.</summary>
    public static bool IsGvisor()
    {
        try
        {
            return File.ReadAllText("/proc/version").Contains("#1 SMP Sun Jan 10 15:06:54 PST 2016", StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    public void Start() => _ = RunAsync(_stop.Token);

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(Period, time);
        var lastWall = time.GetUtcNow();
        var lastTicks = time.GetTimestamp();
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                var wall = time.GetUtcNow();
                var ticks = time.GetTimestamp();
                var wallGap = wall - lastWall;
                var monotonicGap = time.GetElapsedTime(lastTicks, ticks);
                lastWall = wall;
                lastTicks = ticks;
                if (wallGap - Period > StallThreshold || wallGap < TimeSpan.Zero || monotonicGap - Period > StallThreshold)
                {
                    HostingLog.StallSeen(logger, wallGap.TotalMilliseconds, monotonicGap.TotalMilliseconds);
                    await transport.RebindAllAsync();
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopped.
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _stop.Dispose();
    }
}

/// <summary>Log messages of the agent's hosting (event ids 2300-2399).</summary>
internal static partial class HostingLog
{
    [LoggerMessage(EventId = 2300, Level = LogLevel.Warning, Message = "Accepting on {EndPoint} ended without a connection ({Outcome}, SocketError {SocketError}, errno {Errno}) while the server is running: binding it again")]
    public static partial void AcceptEnded(ILogger logger, EndPoint endPoint, string outcome, string socketError, int errno, Exception? exception);

    [LoggerMessage(EventId = 2301, Level = LogLevel.Warning, Message = "Listening on {EndPoint} again")]
    public static partial void Rebound(ILogger logger, EndPoint endPoint);

    [LoggerMessage(EventId = 2302, Level = LogLevel.Warning, Message = "Binding {EndPoint} again failed")]
    public static partial void RebindFailed(ILogger logger, EndPoint endPoint, Exception exception);

    [LoggerMessage(EventId = 2303, Level = LogLevel.Critical, Message = "Gave up listening on {EndPoint} after {Attempts} binds in a row ended without a connection")]
    public static partial void RebindGaveUp(ILogger logger, EndPoint endPoint, int attempts);

    [LoggerMessage(EventId = 2304, Level = LogLevel.Warning, Message = "The process was stalled ({WallMs} ms by the wall clock, {MonotonicMs} ms by the monotonic clock for a 1000 ms timer), as after a restore: binding the listeners again")]
    public static partial void StallSeen(ILogger logger, double wallMs, double monotonicMs);
}
