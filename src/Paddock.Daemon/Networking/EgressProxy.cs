using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Paddock.Daemon.Networking;

/// <summary>
/// The transparent proxy behind domain allowlists. nftables redirects a sandbox's connections on ports 80 and 443
/// to denied addresses here (<see cref="NftRules"/>); the proxy reads the HTTP Host header or the TLS SNI, and when
/// the sandbox's policy lists that name it connects onward to an address the name has in the daemon's own resolver
/// (<see cref="DaemonResolver"/>), on the port the sandbox asked for, and relays the bytes unchanged. A connection
/// whose name is not listed, is missing or does not parse is refused. It never opens a connection to the host
/// itself or to a sandbox, and serves only connections from a linked sandbox's own address.
/// </summary>
/// <remarks>
/// Where the sandbox sent the connection (SO_ORIGINAL_DST) does not choose the server, only the port (issue 21):
/// before, the proxy connected to that address, so a sandbox allowed only "pypi.org" could send SNI "pypi.org" to
/// a server of its own and reach it (domain fronting by address). The sandbox's address is kept when it is one the
/// name resolves to (the sandbox asked the same resolvers through <see cref="DnsForwarder"/>), else the first
/// address of the answer is used. A destination that the policy allows by address (a CIDR in allowOut) is
/// connected to as it is, with no name involved. What passes is then "bytes to an address that a listed name has";
/// what the listed service does with them (relaying, hosting user content under a wildcard) is its own.
/// </remarks>
internal sealed class EgressProxy : IAsyncDisposable
{
    private const int SolIp = 0;
    private const int SoOriginalDst = 80; // linux/netfilter_ipv4.h
    private const int MaxConnections = 4096;

    private readonly NetworkOptions _options;
    private readonly Func<IPAddress, SandboxLink?> _findLink;
    private readonly Func<IPAddress, bool> _isForbidden;
    private readonly DaemonResolver _resolver;
    private readonly ILogger _logger;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _slots = new(MaxConnections, MaxConnections);
    private Task _acceptLoop = Task.CompletedTask;

    public EgressProxy(NetworkOptions options, Func<IPAddress, SandboxLink?> findLink, Func<IPAddress, bool> isForbidden, DaemonResolver resolver, ILogger logger)
    {
        _options = options;
        _findLink = findLink;
        _isForbidden = isForbidden;
        _resolver = resolver;
        _logger = logger;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        // On all addresses: nftables' redirect rewrites the destination to the link's host address. The input guard
        // lets only redirected connections from links reach the port, and the proxy checks the source again.
        _listener.Bind(new IPEndPoint(IPAddress.Any, options.ProxyPort));
        _listener.Listen(512);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    public void Start() => _acceptLoop = AcceptLoopAsync(_stop.Token);

    private async Task AcceptLoopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex)
            {
                // Transient (the client reset before accept, or out of fds for a moment): log and go on, a little later.
                NetworkLog.ProxyAcceptFailed(_logger, ex);
                await Task.Delay(50, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                continue;
            }
            if (!_slots.Wait(0))
            {
                client.Dispose(); // over the connection bound: refuse rather than grow without limit
                continue;
            }
            _ = Task.Run(async () =>
            {
                try
                {
                    await ServeAsync(client, cancellationToken);
                }
                finally
                {
                    client.Dispose();
                    _slots.Release();
                }
            }, CancellationToken.None);
        }
    }

    private async Task ServeAsync(Socket client, CancellationToken cancellationToken)
    {
        var source = ((IPEndPoint)client.RemoteEndPoint!).Address.MapToIPv4();
        var link = _findLink(source);
        if (link is null)
        {
            NetworkLog.ProxyDropped(_logger, source.ToString(), "not a sandbox address");
            return;
        }
        if (OriginalDestination(client) is not { } destination || destination.Equals(client.LocalEndPoint))
        {
            NetworkLog.ProxyDropped(_logger, source.ToString(), "not a redirected connection");
            return;
        }

        var buffer = ArrayPool<byte>.Shared.Rent(HostNameSniffer.MaxBytes);
        try
        {
            var (result, host, length) = await ReadHostAsync(client, buffer, cancellationToken);
            // The policy now, not when the connection came in: a change while it sent its first bytes counts.
            var policy = _findLink(source)?.Policy ?? link.Policy;
            var name = host ?? "";
            string? refusal = result switch
            {
                SniffResult.Found => null,
                SniffResult.NoName => "no Host header or TLS server name",
                _ => "neither an HTTP request nor a TLS ClientHello within the limits",
            };
            var onward = destination;
            if (refusal is null)
            {
                (onward, refusal) = await ChooseOnwardAsync(policy, name, destination, cancellationToken);
            }
            if (refusal is not null || onward is null)
            {
                NetworkLog.ProxyRefused(_logger, link.SandboxId, name, destination.ToString(), refusal ?? "no destination");
                if (length > 0 && buffer[0] != 0x16)
                {
                    await RespondForbiddenAsync(client, name, cancellationToken);
                }
                return;
            }

            using var upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            using (var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                connectTimeout.CancelAfter(_options.ProxyConnectTimeout);
                try
                {
                    await upstream.ConnectAsync(onward, connectTimeout.Token);
                }
                catch (Exception ex) when (ex is SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
                {
                    NetworkLog.ProxyRefused(_logger, link.SandboxId, name, onward.ToString(), "onward connection failed: " + ex.Message);
                    return;
                }
            }
            NetworkLog.ProxyAllowed(_logger, link.SandboxId, name, onward.ToString());
            await upstream.SendAsync(buffer.AsMemory(0, length), cancellationToken);
            await RelayAsync(client, upstream, cancellationToken);
        }
        catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException)
        {
            // The sandbox or the server went away, or the daemon stops: the connection ends, nothing else to do.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Where a connection for <paramref name="name"/> that the sandbox sent to <paramref name="destination"/> goes:
    /// the destination itself when the policy allows that address; else, for a listed name, an address the name
    /// has in the daemon's resolver (the destination when it is one of them), on the destination's port; else a
    /// refusal. Never the host or a sandbox.
    /// </summary>
    private async Task<(IPEndPoint? Onward, string? Refusal)> ChooseOnwardAsync(EgressPolicy policy, string name, IPEndPoint destination, CancellationToken cancellationToken)
    {
        if (policy.AllowsAddress(destination.Address))
        {
            return _isForbidden(destination.Address) ? (null, "the destination is the host or a sandbox") : (destination, null);
        }
        if (!policy.AllowsHost(name))
        {
            return (null, "the name is not on the allowlist");
        }
        var lookup = await _resolver.LookupAsync(EgressPolicy.NormalizeDomain(name)!, cancellationToken);
        var usable = lookup.Addresses.Where(a => !_isForbidden(a)).ToList();
        if (usable.Count == 0)
        {
            return (null, lookup.Failure is { } failure ? "the name does not resolve: " + failure : "the name resolves only to the host or a sandbox");
        }
        var address = usable.Contains(destination.Address) ? destination.Address : usable[0];
        return (new IPEndPoint(address, destination.Port), null);
    }

    private async Task<(SniffResult Result, string? Host, int Length)> ReadHostAsync(Socket client, byte[] buffer, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ProxyHandshakeTimeout);
        var length = 0;
        try
        {
            while (length < HostNameSniffer.MaxBytes)
            {
                var read = await client.ReceiveAsync(buffer.AsMemory(length, HostNameSniffer.MaxBytes - length), timeout.Token);
                if (read == 0)
                {
                    break;
                }
                length += read;
                var result = HostNameSniffer.Sniff(buffer.AsSpan(0, length), out var host);
                if (result != SniffResult.NeedMore)
                {
                    return (result, host, length);
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // It said nothing within the handshake timeout.
        }
        return (SniffResult.Invalid, null, length);
    }

    private static async Task RespondForbiddenAsync(Socket client, string host, CancellationToken cancellationToken)
    {
        var body = $"paddock: egress to '{host}' is not allowed by this sandbox's network policy\n";
        var response = $"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\nConnection: close\r\n\r\n{body}";
        await client.SendAsync(Encoding.UTF8.GetBytes(response), cancellationToken);
    }

    /// <summary>Copies both ways until both sides finished sending; an end of one direction is passed on as a half-close.</summary>
    private static async Task RelayAsync(Socket a, Socket b, CancellationToken cancellationToken)
    {
        static async Task PumpAsync(Socket from, Socket to, CancellationToken ct)
        {
            var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
            try
            {
                while (true)
                {
                    var n = await from.ReceiveAsync(buffer, ct);
                    if (n == 0)
                    {
                        to.Shutdown(SocketShutdown.Send);
                        return;
                    }
                    await to.SendAsync(buffer.AsMemory(0, n), ct);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        using var either = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var up = PumpAsync(a, b, either.Token);
        var down = PumpAsync(b, a, either.Token);
        var first = await Task.WhenAny(up, down);
        if (first.IsFaulted)
        {
            await either.CancelAsync(); // a reset on one side ends the other too
        }
        await Task.WhenAll(up, down).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>The destination the sandbox connected to before nftables redirected it (getsockopt SO_ORIGINAL_DST).</summary>
    private static IPEndPoint? OriginalDestination(Socket socket)
    {
        Span<byte> sockaddr = stackalloc byte[16];
        try
        {
            var length = socket.GetRawSocketOption(SolIp, SoOriginalDst, sockaddr);
            if (length < 8 || BinaryPrimitives.ReadUInt16LittleEndian(sockaddr) != (ushort)AddressFamily.InterNetwork)
            {
                return null;
            }
        }
        catch (SocketException)
        {
            return null; // ENOENT: no conntrack entry, so not redirected
        }
        var port = BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]);
        return new IPEndPoint(new IPAddress(sockaddr.Slice(4, 4)), port);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _acceptLoop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }
}
