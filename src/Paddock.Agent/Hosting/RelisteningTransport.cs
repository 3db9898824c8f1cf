using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
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
/// problem. This is gVisor issue 13920 (epoll registrations made before a checkpoint get no events after the restore),
/// fixed upstream after the build Debian ships; the daemon tells the agent of each restore (<see cref="RestoreWatch"/>),
/// and /health reports when the current sockets were bound (<see cref="ListeningSince"/>).
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
        MarkBound();
        var relistening = new RelisteningListener(inner, listener, logger, MarkBound);
        lock (_gate)
        {
            _listeners.Add(relistening);
        }
        return relistening;
    }

    /// <summary>Closes every TCP listening socket; each listener's accept loop then binds a new one (see the class).</summary>
    public async Task RebindAllAsync()
    {
        foreach (var listener in Listeners())
        {
            await listener.CloseCurrentAsync();
        }
    }

    /// <summary>
    /// When the current TCP listening sockets were bound: the latest bind of any of them (the first at start, then each
    /// bind again), in Unix milliseconds by the wall clock. /health reports it (<c>X-Paddock-Listening-Since</c>), so
    /// that the daemon can wait, after a restore, for sockets bound after it (<see cref="RestoreWatch"/>).
    /// </summary>
    public long ListeningSince => Interlocked.Read(ref _listeningSince);

    private long _listeningSince;

    private void MarkBound() => Interlocked.Exchange(ref _listeningSince, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

    private RelisteningListener[] Listeners()
    {
        lock (_gate)
        {
            return [.. _listeners];
        }
    }

    private sealed class RelisteningListener(IConnectionListenerFactory factory, IConnectionListener first, ILogger logger, Action bound) : IConnectionListener
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
                bound();
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
/// Binds every TCP listener again when the daemon says the process was restored: the daemon sends SIGUSR2
/// (<see cref="Signal"/>) after each <c>runsc restore</c> (a memory resume, each fork copy), and then waits until
/// /health reports sockets bound after the restore (<see cref="RelisteningTransportFactory.ListeningSince"/>), so no
/// request of its own or of a user meets the gap between the close and the new bind. Every listener, not only one that
/// looks deaf: a socket registered with the engine's epoll before the checkpoint cannot be trusted after it (gVisor
/// issue 13920), and one that took a connection of its own after a restore was seen going deaf right after (the pause
/// bench: a resume whose readiness probe was answered, then a request refused or hung). Why a signal: a restored
/// process gets no notice of its own, and the earlier way, a one-second timer that counted a stall of 1.5 s beyond its
/// period as a restore, missed the SDK's short pause-then-resume cases (CI, 2026-12-06). The signal costs nothing while
/// the sandbox idles; the timer woke it every second. Runs under gVisor only (<see cref="IsGvisor"/>); anything in the
/// sandbox that may signal the agent can at most make it bind its listeners again.
/// </summary>
internal sealed class RestoreWatch(RelisteningTransportFactory transport, ILogger logger) : IDisposable
{
    /// <summary>SIGUSR2, which neither .NET nor the agent uses otherwise.</summary>
    public const int Signal = 12;

    private PosixSignalRegistration? _registration;

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

    public void Start() => _registration = PosixSignalRegistration.Create((PosixSignal)Signal, context =>
    {
        // Handled: without this the runtime carries out SIGUSR2's default action after the handler, which ends the process.
        context.Cancel = true;
        HostingLog.RestoreSignalled(logger);
        _ = transport.RebindAllAsync();
    });

    public void Dispose() => _registration?.Dispose();
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

    [LoggerMessage(EventId = 2304, Level = LogLevel.Warning, Message = "Told that the process was restored: binding the listeners again")]
    public static partial void RestoreSignalled(ILogger logger);
}
