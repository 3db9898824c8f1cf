using System.Net;
using System.Net.Sockets;
using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary><see cref="RefusableConnect"/>: a refused connect is false, not an exception; an accepted one connects.</summary>
public sealed class RefusableConnectTests
{
    [Fact]
    public async Task A_port_nobody_listens_on_gives_false_and_a_listening_one_a_connected_socket()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var open = (IPEndPoint)listener.LocalEndpoint;
        // A port that was bound and released: nothing listens on it now (loopback refuses at once).
        int closedPort;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            closedPort = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        using var refused = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var accepted = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);

        var refusedResult = await RefusableConnect.ConnectAsync(refused, new IPEndPoint(IPAddress.Loopback, closedPort), TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
        var acceptedResult = await RefusableConnect.ConnectAsync(accepted, open, TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
        using var server = await listener.AcceptSocketAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));

        Assert.False(refusedResult);
        Assert.False(refused.Connected);
        Assert.True(acceptedResult);
        Assert.True(accepted.Connected);
        Assert.Equal(accepted.LocalEndPoint, server.RemoteEndPoint);
    }

    [Fact]
    public async Task A_cancelled_token_throws_before_connecting()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await RefusableConnect.ConnectAsync(socket, new IPEndPoint(IPAddress.Loopback, 9), cancelled.Token));
    }
}
