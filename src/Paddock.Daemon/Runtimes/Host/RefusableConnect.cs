using System.Net;
using System.Net.Sockets;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// A TCP connect whose refusal is a value, not an exception, for the probes that expect refusals (the wait for a new
/// sandbox's agent to listen). Each refused <see cref="Socket.ConnectAsync(EndPoint, CancellationToken)"/> throws a
/// SocketException whose stack trace .NET renders at once with file and line information
/// (ExceptionDispatchInfo.SetCurrentStackTrace), which looks for a PDB beside every assembly on the stack: perf of
/// paddockd's cold creates (issue 19, `bench/run daemon --only cold`) put 26% of its own CPU per create there, a
/// create probing 5-10 times before its agent listened.
/// </summary>
internal static class RefusableConnect
{
    /// <summary>
    /// Connects <paramref name="socket"/> to <paramref name="endpoint"/>; false when the connection was refused or
    /// reset (nothing listens yet), and with <paramref name="unreachableIsRefusal"/> also when the host is unreachable
    /// (a gVisor sandbox's link address before its netstack answers: the gVisor tier's ConnectAsync always answered
    /// that as "nothing listens"). Throws <see cref="SocketException"/> for any other error and
    /// <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> fires first.
    /// </summary>
    public static async ValueTask<bool> ConnectAsync(Socket socket, EndPoint endpoint, CancellationToken cancellationToken, bool unreachableIsRefusal = false)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var args = new SocketAsyncEventArgs { RemoteEndPoint = endpoint };
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        args.Completed += (_, _) => done.TrySetResult();
        // A loopback connect mostly completes at once (refused or accepted), without the completion event.
        if (socket.ConnectAsync(args))
        {
            await using (cancellationToken.Register(() => Socket.CancelConnectAsync(args)))
            {
                await done.Task;
            }
            cancellationToken.ThrowIfCancellationRequested();
        }
        return args.SocketError switch
        {
            SocketError.Success => true,
            SocketError.ConnectionRefused or SocketError.ConnectionReset => false,
            SocketError.HostUnreachable when unreachableIsRefusal => false,
            SocketError.OperationAborted when cancellationToken.IsCancellationRequested => throw new OperationCanceledException(cancellationToken),
            var error => throw new SocketException((int)error),
        };
    }
}
