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
/// fixed upstream after the build Debian ships; the daemon tells the agent of each restore (<see cref="RestoreWatch"/>).
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
        foreach (var listener in Listeners())
        {
            await listener.CloseCurrentAsync();
        }
    }

    /// <summary>
    /// Binds again only the listeners that no longer report connections: each is sent a connection of its own, and
    /// closed (then bound again by its accept loop) when its accept loop has not taken that connection, or any other,
    /// within <paramref name="probeTimeout"/>. A listener that still works is left alone, because closing it refuses
    /// connections until the new socket is bound: after a restore whose listener had survived, the daemon's readiness
    /// probe was answered and the very next request, sent in that gap, was refused (CI, issue 15's pause cases).
    /// Returns how many listeners were closed.
    /// </summary>
    public async Task<int> RecoverAsync(TimeSpan probeTimeout, CancellationToken cancellationToken)
    {
        var closed = 0;
        foreach (var listener in Listeners())
        {
            if (!await listener.AcceptsAsync(probeTimeout, cancellationToken))
            {
                await listener.CloseCurrentAsync();
                closed++;
            }
        }
        return closed;
    }

    private RelisteningListener[] Listeners()
    {
        lock (_gate)
        {
            return [.. _listeners];
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
        private long _accepted;

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
                        Interlocked.Increment(ref _accepted);
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

        /// <summary>
        /// Whether the accept loop takes a connection within <paramref name="timeout"/> of this one's connect to the
        /// endpoint (over loopback when it is bound to every address). A connect that fails counts as not accepted.
        /// </summary>
        public async Task<bool> AcceptsAsync(TimeSpan timeout, CancellationToken cancellationToken)
        {
            if (EndPoint is not IPEndPoint endpoint)
            {
                return true;
            }
            var target = endpoint.Address.Equals(IPAddress.Any) ? new IPEndPoint(IPAddress.Loopback, endpoint.Port)
                : endpoint.Address.Equals(IPAddress.IPv6Any) ? new IPEndPoint(IPAddress.IPv6Loopback, endpoint.Port)
                : endpoint;
            var before = Interlocked.Read(ref _accepted);
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(timeout);
            using var probe = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await probe.ConnectAsync(target, deadline.Token);
                // Polled, not signalled: the check runs once per stall, and a few 10 ms naps are nothing beside it.
                while (Interlocked.Read(ref _accepted) == before)
                {
                    await Task.Delay(10, deadline.Token);
                }
                return true;
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return false;
            }
            catch (SocketException)
            {
                return false;
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
/// Checks the listeners when the daemon says the process was restored: the daemon sends SIGUSR2 (<see cref="Signal"/>)
/// after each <c>runsc restore</c> (a memory resume, each fork copy), and each listener is then sent a connection of
/// its own and bound again only when it does not take it (<see cref="RelisteningTransportFactory.RecoverAsync"/>), so
/// that a restore whose listener survived refuses nothing. Why a signal: a restored process gets no notice of its own,
/// and the earlier way, a one-second timer that counted a stall of 1.5 s beyond its period as a restore, missed the
/// SDK's pause-then-resume cases, whose whole gap was shorter (CI, 2026-12-06: no stall logged, the listener deaf for
/// the 30 s of the readiness wait). The signal costs nothing while the sandbox idles; the timer woke it every second.
/// Runs under gVisor only (<see cref="IsGvisor"/>); anything in the sandbox that may signal the agent can at most make
/// it connect to itself.
/// </summary>
internal sealed class RestoreWatch(RelisteningTransportFactory transport, ILogger logger) : IDisposable
{
    /// <summary>SIGUSR2, which neither .NET nor the agent uses otherwise.</summary>
    public const int Signal = 12;

    /// <summary>How long a listener has to take the watch's own connection; a loopback accept takes microseconds.</summary>
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(2);

    private readonly CancellationTokenSource _stop = new();
    private PosixSignalRegistration? _registration;
    private int _checking;

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
        _ = CheckAsync();
    });

    /// <summary>One check at a time: signals that arrive during a check are covered by it.</summary>
    private async Task CheckAsync()
    {
        if (Interlocked.Exchange(ref _checking, 1) == 1)
        {
            return;
        }
        try
        {
            var closed = await transport.RecoverAsync(ProbeTimeout, _stop.Token);
            HostingLog.RestoreChecked(logger, closed);
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
        finally
        {
            Volatile.Write(ref _checking, 0);
        }
    }

    public void Dispose()
    {
        _registration?.Dispose();
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

    [LoggerMessage(EventId = 2304, Level = LogLevel.Warning, Message = "Told that the process was restored: {Closed} listeners did not take a connection of their own and are bound again")]
    public static partial void RestoreChecked(ILogger logger, int closed);
}
