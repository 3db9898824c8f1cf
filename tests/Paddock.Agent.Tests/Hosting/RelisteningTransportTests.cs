using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Paddock.Agent.Hosting;

namespace Paddock.Agent.Tests.Hosting;

/// <summary>
/// <see cref="RelisteningTransportFactory"/> over Kestrel's real socket transport: a listener closed under a pending
/// accept (what the restore watch does after a gVisor restore) is bound again on the same port and accepts the next
/// connection; a listener unbound by the server (stopping) is not; the restore watch's check closes only a listener
/// that no longer reports connections.
/// </summary>
public sealed class RelisteningTransportTests
{
    /// <summary>A guard against a hang, not a timing assertion.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    private static RelisteningTransportFactory NewTransport() => new(
        new SocketTransportFactory(Options.Create(new SocketTransportOptions()), NullLoggerFactory.Instance),
        NullLogger.Instance);

    [Fact]
    public async Task A_listener_closed_under_a_pending_accept_is_bound_again_on_the_same_port_and_accepts()
    {
        var transport = NewTransport();
        await using var listener = await transport.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var endpoint = (IPEndPoint)listener.EndPoint;
        var accepting = listener.AcceptAsync().AsTask();

        await transport.RebindAllAsync();

        // The new socket is bound by the accept loop after the close: refused until then (bounded in count).
        using var client = await ConnectWhenListeningAsync(endpoint);
        var connection = await accepting.WaitAsync(Guard);
        Assert.NotNull(connection);
        Assert.Equal(((IPEndPoint)client.LocalEndPoint!).Port, ((IPEndPoint)connection.RemoteEndPoint!).Port);
        await connection.DisposeAsync();
    }

    [Fact]
    public async Task The_recovery_check_leaves_a_listener_that_takes_connections_open()
    {
        var transport = NewTransport();
        await using var listener = await transport.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var endpoint = (IPEndPoint)listener.EndPoint;
        var accepted = AcceptLoop(listener);

        Assert.Equal(0, await transport.RecoverAsync(TimeSpan.FromSeconds(10), CancellationToken.None));

        // Not closed: a connect right after the check is taken by the same socket, never refused.
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(endpoint).WaitAsync(Guard);
        var connection = await accepted.Reader.ReadAsync().AsTask().WaitAsync(Guard); // the check's own connection
        connection = await accepted.Reader.ReadAsync().AsTask().WaitAsync(Guard);
        Assert.Equal(((IPEndPoint)client.LocalEndPoint!).Port, ((IPEndPoint)connection.RemoteEndPoint!).Port);
    }

    [Fact]
    public async Task The_recovery_check_binds_again_a_listener_whose_accepts_never_complete()
    {
        // The first socket is a real one whose accepts are never reported (the restored gVisor listener): the kernel
        // completes the handshake, the accept loop hears nothing. Later binds are ordinary.
        var deaf = new DeafFirstFactory(new SocketTransportFactory(Options.Create(new SocketTransportOptions()), NullLoggerFactory.Instance));
        var transport = new RelisteningTransportFactory(deaf, NullLogger.Instance);
        await using var listener = await transport.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var endpoint = (IPEndPoint)listener.EndPoint;
        var accepted = AcceptLoop(listener);

        Assert.Equal(1, await transport.RecoverAsync(TimeSpan.FromMilliseconds(500), CancellationToken.None));

        using var client = await ConnectWhenListeningAsync(endpoint);
        var connection = await accepted.Reader.ReadAsync().AsTask().WaitAsync(Guard);
        Assert.Equal(((IPEndPoint)client.LocalEndPoint!).Port, ((IPEndPoint)connection.RemoteEndPoint!).Port);
        Assert.Equal(2, deaf.Binds);
    }

    /// <summary>Kestrel's accept loop in small: every connection the listener returns, until it returns none.</summary>
    private static System.Threading.Channels.Channel<ConnectionContext> AcceptLoop(IConnectionListener listener)
    {
        var accepted = System.Threading.Channels.Channel.CreateUnbounded<ConnectionContext>();
        _ = Task.Run(async () =>
        {
            while (await listener.AcceptAsync() is { } connection)
            {
                accepted.Writer.TryWrite(connection);
            }
            accepted.Writer.TryComplete();
        });
        return accepted;
    }

    private sealed class DeafFirstFactory(IConnectionListenerFactory inner) : IConnectionListenerFactory
    {
        public int Binds { get; private set; }

        public async ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
        {
            var listener = await inner.BindAsync(endpoint, cancellationToken);
            return ++Binds == 1 ? new DeafListener(listener) : listener;
        }
    }

    /// <summary>Listens for real and never reports a connection; its accept ends (with none) when it is closed.</summary>
    private sealed class DeafListener(IConnectionListener real) : IConnectionListener
    {
        private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public EndPoint EndPoint => real.EndPoint;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            await _closed.Task.WaitAsync(cancellationToken);
            return null;
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default) => DisposeAsync();

        public async ValueTask DisposeAsync()
        {
            await real.DisposeAsync();
            _closed.TrySetResult();
        }
    }

    private static async Task<Socket> ConnectWhenListeningAsync(IPEndPoint endpoint)
    {
        for (var attempt = 1; ; attempt++)
        {
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await client.ConnectAsync(endpoint).WaitAsync(Guard);
                return client;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused && attempt < 100)
            {
                client.Dispose();
                await Task.Delay(50);
            }
        }
    }

    [Fact]
    public async Task An_unbound_listener_ends_its_accept_and_is_not_bound_again()
    {
        var transport = NewTransport();
        await using var listener = await transport.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var endpoint = (IPEndPoint)listener.EndPoint;
        var accepting = listener.AcceptAsync().AsTask();

        await listener.UnbindAsync();
        Assert.Null(await accepting.WaitAsync(Guard));
        await transport.RebindAllAsync();

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var refused = await Assert.ThrowsAsync<SocketException>(() => client.ConnectAsync(endpoint).WaitAsync(Guard));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
    }
}
