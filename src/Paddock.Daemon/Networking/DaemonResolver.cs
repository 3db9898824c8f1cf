using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using ARSoft.Tools.Net.Dns;

namespace Paddock.Daemon.Networking;

/// <summary>The addresses a name has now, or why there are none.</summary>
internal readonly record struct AddressLookup(IReadOnlyList<IPAddress> Addresses, string? Failure);

/// <summary>
/// The daemon's own view of DNS: its resolvers (<see cref="NetworkOptions.DnsServers"/>, else the nameservers of
/// /etc/resolv.conf), asked over UDP (TCP when the answer was truncated). The <see cref="DnsForwarder"/> passes
/// sandboxes' allowed questions through <see cref="ExchangeAsync"/>; the <see cref="EgressProxy"/> asks
/// <see cref="LookupAsync"/> where an allowed name goes, so that a connection ends where the name points, never
/// where the sandbox pointed it. Addresses are kept for the answer's TTL, at most
/// <see cref="NetworkOptions.DnsCacheMaxTtl"/>.
/// </summary>
internal sealed class DaemonResolver
{
    /// <summary>Names kept at once; past it the cache starts over (a sandbox asking for many names cannot grow it).</summary>
    private const int MaxCachedNames = 4096;

    /// <summary>resolv.conf(5) reads at most three nameservers; so does the daemon.</summary>
    private const int MaxServers = 3;

    private readonly TimeSpan _timeout;
    private readonly TimeSpan _maxTtl;
    private readonly ConcurrentDictionary<string, (IReadOnlyList<IPAddress> Addresses, long ExpiresAt)> _cache = new(StringComparer.Ordinal);

    public DaemonResolver(IReadOnlyList<IPEndPoint> servers, TimeSpan timeout, TimeSpan maxTtl)
    {
        Servers = servers;
        _timeout = timeout;
        _maxTtl = maxTtl;
    }

    public static DaemonResolver From(NetworkOptions options) => new(ServersFrom(options.DnsServers, "/etc/resolv.conf"), options.DnsTimeout, options.DnsCacheMaxTtl);

    public IReadOnlyList<IPEndPoint> Servers { get; }

    /// <summary>
    /// <paramref name="configured"/> ("ADDRESS" or "ADDRESS:PORT", IPv4) when there are any, else the IPv4
    /// <c>nameserver</c> lines of <paramref name="resolvConf"/>; at most three. Throws <see cref="FormatException"/>
    /// naming an entry that is not an IPv4 address with an optional port.
    /// </summary>
    public static IReadOnlyList<IPEndPoint> ServersFrom(IReadOnlyList<string> configured, string resolvConf)
    {
        var servers = new List<IPEndPoint>();
        if (configured.Count > 0)
        {
            foreach (var entry in configured)
            {
                if (!IPEndPoint.TryParse(entry.Trim(), out var endpoint) || endpoint.AddressFamily != AddressFamily.InterNetwork || entry.Count(c => c == '.') != 3)
                {
                    throw new FormatException($"DNS server '{entry}' is not an IPv4 address with an optional port (ADDRESS or ADDRESS:PORT)");
                }
                servers.Add(endpoint.Port == 0 ? new IPEndPoint(endpoint.Address, 53) : endpoint);
            }
        }
        else if (File.Exists(resolvConf))
        {
            foreach (var line in File.ReadLines(resolvConf))
            {
                var fields = line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
                // IPv4 only: sandbox egress is IPv4 only, and so is the daemon's side of it.
                if (fields is ["nameserver", var value, ..] && IPAddress.TryParse(value, out var address) && address.AddressFamily == AddressFamily.InterNetwork)
                {
                    servers.Add(new IPEndPoint(address, 53));
                }
            }
        }
        return servers.Take(MaxServers).ToList();
    }

    /// <summary>
    /// Sends a recursive query for <paramref name="question"/> (the question section's bytes) to each resolver in
    /// turn until one answers; the answer (its id is the query's, not the caller's) or null when none answered
    /// within the timeout, or only with something that is not a DNS answer to it.
    /// </summary>
    public async Task<byte[]?> ExchangeAsync(ReadOnlyMemory<byte> question, bool overTcp, CancellationToken cancellationToken)
    {
        foreach (var server in Servers)
        {
            var id = (ushort)RandomNumberGenerator.GetInt32(ushort.MaxValue + 1);
            var query = DnsWire.Query(id, question.Span);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_timeout);
            try
            {
                var answer = overTcp ? await ExchangeTcpAsync(server, query, timeout.Token) : await ExchangeUdpAsync(server, query, id, timeout.Token);
                if (answer is not null && answer.Length >= DnsWire.HeaderLength && DnsWire.Id(answer) == id && DnsWire.IsResponse(answer)
                    && Parses(answer))
                {
                    return answer;
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // This resolver did not answer in time: the next one.
            }
            catch (Exception ex) when (ex is SocketException or IOException)
            {
                // Refused or unreachable: the next one.
            }
        }
        return null;
    }

    /// <summary>
    /// The IPv4 addresses <paramref name="name"/> has (following CNAMEs within the answer), from the cache while
    /// the answer's TTL lasts. No addresses and a reason when it has none or no resolver answered.
    /// </summary>
    public async Task<AddressLookup> LookupAsync(string name, CancellationToken cancellationToken)
    {
        var now = Environment.TickCount64;
        if (_cache.TryGetValue(name, out var cached) && cached.ExpiresAt > now)
        {
            return new AddressLookup(cached.Addresses, null);
        }
        var question = DnsWire.Question(name, DnsWire.TypeA);
        var answer = await ExchangeAsync(question, overTcp: false, cancellationToken);
        if (answer is not null && DnsWire.IsTruncated(answer))
        {
            answer = await ExchangeAsync(question, overTcp: true, cancellationToken);
        }
        if (answer is null)
        {
            return new AddressLookup([], "no resolver answered");
        }
        var message = DnsMessage.Parse(new ArraySegment<byte>(answer));
        if (message.ReturnCode != ReturnCode.NoError)
        {
            return new AddressLookup([], "the resolver answered " + message.ReturnCode.ToString());
        }
        // The name and what it is an alias of, in the answer section's order (RFC 1034 3.6.2); a bounded chain.
        var names = new HashSet<string>(StringComparer.Ordinal) { name };
        var ttl = int.MaxValue;
        for (var round = 0; round < 8; round++)
        {
            var added = false;
            foreach (var alias in message.AnswerRecords.OfType<CNameRecord>())
            {
                if (names.Contains(Key(alias.Name)) && names.Add(Key(alias.CanonicalName)))
                {
                    ttl = Math.Min(ttl, alias.TimeToLive);
                    added = true;
                }
            }
            if (!added)
            {
                break;
            }
        }
        var records = message.AnswerRecords.OfType<ARecord>().Where(a => names.Contains(Key(a.Name))).ToList();
        if (records.Count == 0)
        {
            return new AddressLookup([], "the name has no IPv4 address");
        }
        ttl = Math.Min(ttl, records.Min(r => r.TimeToLive));
        var addresses = records.Select(r => r.Address).Distinct().ToList();
        var keep = TimeSpan.FromSeconds(Math.Max(0, ttl));
        if (keep > _maxTtl)
        {
            keep = _maxTtl;
        }
        if (keep > TimeSpan.Zero)
        {
            if (_cache.Count >= MaxCachedNames)
            {
                _cache.Clear();
            }
            _cache[name] = (addresses, now + (long)keep.TotalMilliseconds);
        }
        return new AddressLookup(addresses, null);
    }

    private static string Key(ARSoft.Tools.Net.DomainName name) => name.ToString().TrimEnd('.').ToLower(CultureInfo.InvariantCulture);

    /// <summary>Whether ARSoft.Tools.Net reads <paramref name="answer"/> as a DNS message.</summary>
    internal static bool Parses(byte[] answer)
    {
        try
        {
            DnsMessage.Parse(new ArraySegment<byte>(answer));
            return true;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The library reports malformed input with whatever its reader hits (index, argument, format errors).
            return false;
        }
    }

    private static async Task<byte[]?> ExchangeUdpAsync(IPEndPoint server, byte[] query, ushort id, CancellationToken cancellationToken)
    {
        // A socket per query: a fresh source port each time, and connected, so only the server's datagrams arrive.
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        await socket.ConnectAsync(server, cancellationToken);
        await socket.SendAsync(query, cancellationToken);
        var buffer = new byte[65535];
        // A stray or late datagram with another id is skipped; bounded, and by the timeout.
        for (var i = 0; i < 4; i++)
        {
            var n = await socket.ReceiveAsync(buffer, cancellationToken);
            if (n >= DnsWire.HeaderLength && DnsWire.Id(buffer) == id)
            {
                return buffer.AsSpan(0, n).ToArray();
            }
        }
        return null;
    }

    private static async Task<byte[]?> ExchangeTcpAsync(IPEndPoint server, byte[] query, CancellationToken cancellationToken)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(server, cancellationToken);
        var framed = new byte[2 + query.Length];
        BinaryPrimitives.WriteUInt16BigEndian(framed, (ushort)query.Length);
        query.CopyTo(framed, 2);
        await socket.SendAsync(framed, cancellationToken);
        var length = new byte[2];
        if (!await ReadExactlyAsync(socket, length, cancellationToken))
        {
            return null;
        }
        var answer = new byte[BinaryPrimitives.ReadUInt16BigEndian(length)];
        return await ReadExactlyAsync(socket, answer, cancellationToken) ? answer : null;
    }

    /// <summary>Fills <paramref name="buffer"/>; false when the peer closed first.</summary>
    internal static async Task<bool> ReadExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await socket.ReceiveAsync(buffer[read..], cancellationToken);
            if (n == 0)
            {
                return false;
            }
            read += n;
        }
        return true;
    }
}
