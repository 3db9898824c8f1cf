using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using ARSoft.Tools.Net.Dns;
using Microsoft.Extensions.Logging;

namespace Paddock.Daemon.Networking;

/// <summary>
/// The sandboxes' resolver. Each sandbox's /etc/resolv.conf names <see cref="SandboxNetworks.ResolverAddress"/>;
/// nftables redirects UDP and TCP port 53 to that address here (<see cref="NftRules"/>), and the answer follows the
/// asking sandbox's policy at the moment of the question (<see cref="EgressPolicy.ResolvesName"/>):
/// an allowed question goes to the daemon's resolvers (<see cref="DaemonResolver"/>) as a query of the forwarder's
/// own that carries only that question, and their answer comes back; a name the policy does not allow gets NXDOMAIN
/// without any query leaving the host; a sandbox whose egress is closed gets REFUSED for everything.
/// </summary>
/// <remarks>
/// Everything a sandbox sends here is hostile input. A datagram or TCP message is answered only when it comes from a
/// linked sandbox's own address (spoofed sources are dropped by the table's prerouting guard), is a standard query
/// (opcode 0) with exactly one question of at most 255 bytes of name without compression, and parses as a whole
/// with ARSoft.Tools.Net; otherwise it gets FORMERR or NOTIMP, or nothing when not even the header is there. At most
/// <see cref="MaxInFlight"/> questions are answered at once (past that a datagram is dropped, as a busy resolver
/// would), TCP connections are bounded in number, queries per connection and idle time. ARSoft's own DnsServer
/// is not used: its accept loops are <c>async void</c> and it starts a task per datagram without bound
/// (DnsServer.cs of 3.6.1), so a flood from one sandbox would grow the daemon's memory.
/// </remarks>
internal sealed class DnsForwarder : IAsyncDisposable
{
    private const int MaxInFlight = 256;
    private const int MaxTcpConnections = 64;
    private const int MaxQueriesPerTcpConnection = 100;
    private static readonly TimeSpan TcpIdleTimeout = TimeSpan.FromSeconds(10);

    private readonly Func<IPAddress, SandboxLink?> _findLink;
    private readonly DaemonResolver _resolver;
    private readonly ILogger _logger;
    private readonly Socket _udp;
    private readonly Socket _tcp;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _inFlight = new(MaxInFlight, MaxInFlight);
    private readonly SemaphoreSlim _tcpSlots = new(MaxTcpConnections, MaxTcpConnections);
    private Task _loops = Task.CompletedTask;

    /// <summary>Binds UDP and TCP on one port of <paramref name="bindAddress"/> (<paramref name="port"/> 0: a free one).</summary>
    public DnsForwarder(IPAddress bindAddress, int port, Func<IPAddress, SandboxLink?> findLink, DaemonResolver resolver, ILogger logger)
    {
        _findLink = findLink;
        _resolver = resolver;
        _logger = logger;
        // A free port for both protocols: UDP picks, TCP must get the same; bounded retries when TCP's is taken.
        for (var attempt = 0; ; attempt++)
        {
            var udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                udp.Bind(new IPEndPoint(bindAddress, port));
                tcp.Bind(new IPEndPoint(bindAddress, ((IPEndPoint)udp.LocalEndPoint!).Port));
                tcp.Listen(128);
                _udp = udp;
                _tcp = tcp;
                break;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse && port == 0 && attempt < 16)
            {
                udp.Dispose();
                tcp.Dispose();
            }
            catch
            {
                udp.Dispose();
                tcp.Dispose();
                throw;
            }
        }
    }

    public int Port => ((IPEndPoint)_udp.LocalEndPoint!).Port;

    public void Start() => _loops = Task.WhenAll(UdpLoopAsync(_stop.Token), TcpAcceptLoopAsync(_stop.Token));

    private async Task UdpLoopAsync(CancellationToken cancellationToken)
    {
        var buffer = new byte[65535];
        EndPoint any = new IPEndPoint(IPAddress.Any, 0);
        while (!cancellationToken.IsCancellationRequested)
        {
            SocketReceiveFromResult received;
            try
            {
                received = await _udp.ReceiveFromAsync(buffer, SocketFlags.None, any, cancellationToken);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex)
            {
                // Transient (an ICMP error queued on the socket, a signal): log and go on, a little later.
                NetworkLog.DnsReceiveFailed(_logger, ex);
                await Task.Delay(10, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                continue;
            }
            if (!_inFlight.Wait(0))
            {
                continue; // busy: dropped, the client asks again
            }
            var client = (IPEndPoint)received.RemoteEndPoint;
            var query = buffer.AsSpan(0, received.ReceivedBytes).ToArray();
            _ = Task.Run(async () =>
            {
                try
                {
                    var answer = await AnswerAsync(query, client.Address, overTcp: false, cancellationToken);
                    if (answer is not null)
                    {
                        await _udp.SendToAsync(answer, SocketFlags.None, client, cancellationToken);
                    }
                }
                catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
                {
                    // The daemon stops, or the sandbox went away: nothing to answer to.
                }
                finally
                {
                    _inFlight.Release();
                }
            }, CancellationToken.None);
        }
    }

    private async Task TcpAcceptLoopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _tcp.AcceptAsync(cancellationToken);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex)
            {
                NetworkLog.DnsReceiveFailed(_logger, ex);
                await Task.Delay(10, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                continue;
            }
            if (!_tcpSlots.Wait(0))
            {
                client.Dispose(); // over the bound: refuse rather than grow
                continue;
            }
            _ = Task.Run(async () =>
            {
                try
                {
                    await ServeTcpAsync(client, cancellationToken);
                }
                catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
                {
                    // The client went away, stalled past the idle timeout, or the daemon stops.
                }
                finally
                {
                    client.Dispose();
                    _tcpSlots.Release();
                }
            }, CancellationToken.None);
        }
    }

    /// <summary>Length-prefixed messages (RFC 1035 4.2.2, RFC 7766), one at a time, each within the idle timeout.</summary>
    private async Task ServeTcpAsync(Socket client, CancellationToken cancellationToken)
    {
        var source = ((IPEndPoint)client.RemoteEndPoint!).Address.MapToIPv4();
        if (_findLink(source) is null)
        {
            return;
        }
        var length = new byte[2];
        for (var i = 0; i < MaxQueriesPerTcpConnection; i++)
        {
            using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            idle.CancelAfter(TcpIdleTimeout);
            if (!await DaemonResolver.ReadExactlyAsync(client, length, idle.Token))
            {
                return;
            }
            var size = BinaryPrimitives.ReadUInt16BigEndian(length);
            var query = ArrayPool<byte>.Shared.Rent(Math.Max((int)size, 1));
            try
            {
                if (!await DaemonResolver.ReadExactlyAsync(client, query.AsMemory(0, size), idle.Token))
                {
                    return;
                }
                await _inFlight.WaitAsync(idle.Token);
                byte[]? answer;
                try
                {
                    answer = await AnswerAsync(query.AsSpan(0, size).ToArray(), source, overTcp: true, cancellationToken);
                }
                finally
                {
                    _inFlight.Release();
                }
                if (answer is null)
                {
                    return;
                }
                var framed = new byte[2 + answer.Length];
                BinaryPrimitives.WriteUInt16BigEndian(framed, (ushort)answer.Length);
                answer.CopyTo(framed, 2);
                await client.SendAsync(framed, idle.Token);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(query);
            }
        }
    }

    /// <summary>
    /// The answer to one message from <paramref name="source"/>, or null when there is none to give (not a sandbox,
    /// not even a DNS header, or itself a response).
    /// </summary>
    internal async Task<byte[]?> AnswerAsync(byte[] query, IPAddress source, bool overTcp, CancellationToken cancellationToken)
    {
        if (query.Length < DnsWire.HeaderLength || DnsWire.IsResponse(query) || _findLink(source) is not { } link)
        {
            return null;
        }
        if (DnsWire.Opcode(query) != 0)
        {
            return DnsWire.Response(query, 0, DnsWire.RcodeNotImp);
        }
        if (DnsWire.QuestionCount(query) != 1 || !DnsWire.TryReadQuestion(query, out var question) || !TryParse(query, out var parsed))
        {
            return DnsWire.Response(query, 0, DnsWire.RcodeFormErr);
        }
        // The policy now, not when the sandbox started: a change applies to the next question.
        var policy = link.Policy;
        string? refusal = null;
        byte rcode = DnsWire.RcodeNoError;
        if (policy.DeniesEverything)
        {
            (refusal, rcode) = ("egress is closed", DnsWire.RcodeRefused);
        }
        else if (!policy.ResolvesName(question.Name))
        {
            (refusal, rcode) = ("the name is not on the allowlist", DnsWire.RcodeNxDomain);
        }
        if (refusal is not null)
        {
            NetworkLog.DnsRefused(_logger, link.SandboxId, question.Name ?? "(not a host name)", question.Type, refusal);
            return DnsWire.Response(query, question.Length, rcode);
        }

        var answer = await _resolver.ExchangeAsync(query.AsMemory(DnsWire.HeaderLength, question.Length), overTcp, cancellationToken);
        if (answer is null)
        {
            return DnsWire.Response(query, question.Length, DnsWire.RcodeServFail);
        }
        DnsWire.SetId(answer, DnsWire.Id(query));
        var limit = overTcp ? ushort.MaxValue
            : parsed.IsEDnsEnabled ? Math.Clamp((int)parsed.EDnsOptions!.UdpPayloadSize, DnsWire.ClassicUdpLimit, DnsWire.EdnsUdpLimit)
            : DnsWire.ClassicUdpLimit;
        return answer.Length <= limit ? answer : DnsWire.Response(query, question.Length, DnsWire.RcodeNoError, truncated: true);
    }

    /// <summary>Whether ARSoft.Tools.Net reads the whole message (records, counts, EDNS) as a DNS message.</summary>
    private static bool TryParse(byte[] query, out DnsMessage message)
    {
        try
        {
            message = DnsMessage.Parse(new ArraySegment<byte>(query));
            return message.Questions.Count == 1;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The library reports malformed input with whatever its reader hits (index, argument, format errors).
            message = null!;
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _udp.Dispose();
        _tcp.Dispose();
        await _loops.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }
}
