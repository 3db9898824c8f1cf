using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Paddock.Agent.Hosting;

/// <summary>
/// Serves HTTP/1.1 and h2c (HTTP/2 by prior knowledge, RFC 9113 §3.3) on one cleartext port.
/// Kestrel in .NET 10 picks HTTP/1.1 for every cleartext connection of an endpoint that allows both
/// ("HTTP/2 requires TLS application protocol negotiation"), so the public endpoint stays HTTP/1.1 and this
/// connection middleware looks at the first bytes: a connection that opens with the HTTP/2 preface is handed to
/// a second, HTTP/2-only endpoint on a private Unix socket, and its bytes are relayed both ways.
/// HTTP/1.1, what E2B's SDKs use, takes no extra hop.
/// </summary>
internal static class H2cHandoff
{
    private static ReadOnlySpan<byte> Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    private const string SocketPrefix = ".paddock-agent-h2-";

    /// <summary>A fresh path for the private HTTP/2 socket, readable by the agent's own user only (see <see cref="ListenPrivate"/>).</summary>
    public static string NewSocketPath() =>
        Path.Combine(Path.GetTempPath(), $"{SocketPrefix}{Environment.ProcessId}-{Guid.NewGuid():N}.sock");

    /// <summary>
    /// Removes the private sockets of agents that are gone (killed with SIGKILL, they could not remove their own): those
    /// whose pid names no process, and those of this pid, which can only be a predecessor's (a sandbox's PID 1 before a
    /// snapshot). Returns how many went; one that cannot be removed is left.
    /// </summary>
    public static int RemoveStale(string directory)
    {
        var removed = 0;
        IEnumerable<string> candidates;
        try
        {
            candidates = Directory.EnumerateFiles(directory, SocketPrefix + "*.sock");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
        foreach (var path in candidates)
        {
            var name = Path.GetFileName(path.AsSpan());
            var rest = name[SocketPrefix.Length..];
            var dash = rest.IndexOf('-');
            if (dash <= 0 || !int.TryParse(rest[..dash], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }
            if (pid != Environment.ProcessId && Directory.Exists($"/proc/{pid}"))
            {
                continue;
            }
            try
            {
                File.Delete(path);
                removed++;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Someone else's, or already gone.
            }
        }
        return removed;
    }

    /// <summary>Adds the private HTTP/2-only endpoint behind <paramref name="socketPath"/>.</summary>
    public static void ListenPrivate(KestrelServerOptions kestrel, string socketPath)
    {
        File.Delete(socketPath);
        kestrel.ListenUnixSocket(socketPath, listen => listen.Protocols = HttpProtocols.Http2);
    }

    /// <summary>Restricts the socket to the agent's user once Kestrel has created it.</summary>
    public static void Restrict(string socketPath)
    {
        if (File.Exists(socketPath))
        {
            File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }

    /// <summary>Hands connections that start with the HTTP/2 preface to <paramref name="socketPath"/>.</summary>
    public static ListenOptions UseH2cHandoff(this ListenOptions listen, string socketPath)
    {
        listen.Use(next => async connection =>
        {
            if (await StartsWithPreface(connection.Transport.Input, connection.ConnectionClosed))
            {
                await Relay(connection, socketPath);
                return;
            }
            await next(connection);
        });
        return listen;
    }

    /// <summary>Reads until the first bytes either match the preface or stop matching; consumes nothing.</summary>
    private static async Task<bool> StartsWithPreface(PipeReader input, CancellationToken cancellationToken)
    {
        var head = new byte[Preface.Length];
        while (true)
        {
            ReadResult result;
            try
            {
                result = await input.ReadAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
            var buffer = result.Buffer;
            var length = (int)Math.Min(buffer.Length, Preface.Length);
            buffer.Slice(0, length).CopyTo(head);
            var matches = head.AsSpan(0, length).SequenceEqual(Preface[..length]);
            if (!matches || length == Preface.Length || result.IsCompleted)
            {
                input.AdvanceTo(buffer.Start);
                return matches && length == Preface.Length;
            }
            // A prefix of the preface so far: wait for more bytes without consuming any.
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static async Task Relay(ConnectionContext connection, string socketPath)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), connection.ConnectionClosed);
        await using var inner = new NetworkStream(socket, ownsSocket: false);
        // Ends the client-to-inner copy once the other direction has ended: the client may keep its side open.
        using var relayEnded = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed);
        var upstream = Task.Run(async () =>
        {
            try
            {
                await connection.Transport.Input.CopyToAsync(inner, relayEnded.Token);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or SocketException)
            {
                // The client went away: the other direction ends with it.
            }
            finally
            {
                socket.Shutdown(SocketShutdown.Send);
            }
        });
        try
        {
            await inner.CopyToAsync(connection.Transport.Output, connection.ConnectionClosed);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or SocketException)
        {
            // The inner endpoint closed or the client left; both end the relay.
        }
        await connection.Transport.Output.CompleteAsync();
        // The input is completed only after its reader has stopped: completing it under a running copy made that copy
        // throw (ReadingAfterCompleted), logged by Kestrel as an unhandled exception (seen in about 1 run in 20 of
        // two h2c requests followed at once by SIGTERM).
        await relayEnded.CancelAsync();
        await upstream;
        await connection.Transport.Input.CompleteAsync();
    }
}
