using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Paddock.Bench.Native;

namespace Paddock.Bench.Agent;

/// <summary>A paddock-agent process on 127.0.0.1, spawned with posix_spawn and stopped by pid.</summary>
internal sealed class AgentHost : IDisposable
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(20);

    private readonly Spawner _spawner;
    private int _pid;

    private AgentHost(Spawner spawner, int pid, int port, TimeSpan startToReady)
    {
        _spawner = spawner;
        _pid = pid;
        Port = port;
        StartToReady = startToReady;
        BaseAddress = new Uri($"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}");
    }

    public int Port { get; }

    /// <summary>The agent's pid (0 once stopped).</summary>
    public int Pid => _pid;

    public Uri BaseAddress { get; }

    /// <summary>From posix_spawn returning to the first 204 from <c>GET /health</c>.</summary>
    public TimeSpan StartToReady { get; }

    /// <summary>Spawns the agent and polls <c>/health</c> (a fresh connection every millisecond) until it answers 204.</summary>
    public static async Task<AgentHost> StartAsync(string binary, string workdir, CancellationToken cancellationToken)
    {
        var port = FreePort();
        var spawner = new Spawner(binary, ["--listen", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture), "--default-workdir", workdir], quiet: true);
        int pid;
        try
        {
            pid = spawner.Spawn();
        }
        catch
        {
            spawner.Dispose();
            throw;
        }
        var clock = Stopwatch.StartNew();
        try
        {
            await WaitForHealthAsync(pid, port, cancellationToken);
        }
        catch
        {
            Spawner.Stop(pid, TimeSpan.FromSeconds(5));
            spawner.Dispose();
            throw;
        }
        return new AgentHost(spawner, pid, port, clock.Elapsed);
    }

    private static async Task WaitForHealthAsync(int pid, int port, CancellationToken cancellationToken)
    {
        var request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"u8.ToArray();
        var buffer = new byte[512];
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < ReadyTimeout)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (Posix.WaitPid(pid, out var status, Posix.WNOHANG) == pid)
            {
                throw new InvalidOperationException($"paddock-agent exited with {Posix.ExitCode(status)} before it was ready");
            }
            // A raw socket, so a refused connection costs microseconds and the poll adds no HttpClient machinery.
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cancellationToken);
                await socket.SendAsync(request, SocketFlags.None, cancellationToken);
                var read = 0;
                int n;
                while ((n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cancellationToken)) > 0 && read + n < buffer.Length)
                {
                    read += n;
                    if (System.Text.Encoding.ASCII.GetString(buffer, 0, read).Contains("\r\n\r\n", StringComparison.Ordinal))
                    {
                        break;
                    }
                }
                if (System.Text.Encoding.ASCII.GetString(buffer, 0, read).StartsWith("HTTP/1.1 204", StringComparison.Ordinal))
                {
                    return;
                }
            }
            catch (SocketException)
            {
                // not listening yet
            }
            await Task.Delay(1, cancellationToken);
        }
        throw new TimeoutException($"paddock-agent did not answer /health on port {port} within {ReadyTimeout.TotalSeconds} s");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>SIGTERM, then SIGKILL after 5 s; returns the exit code.</summary>
    public int Stop()
    {
        if (_pid == 0)
        {
            return 0;
        }
        var code = Spawner.Stop(_pid, TimeSpan.FromSeconds(5));
        _pid = 0;
        return code;
    }

    public void Dispose()
    {
        Stop();
        _spawner.Dispose();
    }
}
