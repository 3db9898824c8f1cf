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
/// connection, and <see cref="RelisteningTransportFactory.ListeningSince"/> then names that bind; a listener unbound by
/// the server (stopping) is not bound again.
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
    public async Task Listening_since_moves_to_the_new_bind_after_a_rebind_and_the_new_socket_accepts()
    {
        var transport = NewTransport();
        await using var listener = await transport.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var endpoint = (IPEndPoint)listener.EndPoint;
        var first = transport.ListeningSince;
        Assert.True(first > 0, "the first bind sets it");
        var accepting = listener.AcceptAsync().AsTask();
        await Task.Delay(20); // the wall clock moves past the first bind's millisecond

        await transport.RebindAllAsync();

        // What the daemon waits for after a restore: a time after the signal, reported once the new socket is bound.
        using var client = await ConnectWhenListeningAsync(endpoint);
        var connection = await accepting.WaitAsync(Guard);
        Assert.NotNull(connection);
        Assert.True(transport.ListeningSince > first, $"listening since {transport.ListeningSince}, first bound at {first}");
        await connection.DisposeAsync();
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
