using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Networking;

/// <summary>
/// Sees every outbound connection attempt of this daemon's sandboxes from the host, where code in a sandbox cannot
/// reach: one NETLINK_NETFILTER socket that is both the listener of an NFLOG group (the packets <see cref="NftRules"/>
/// drops for a policy or a guard, logged first at a bounded rate) and a member of the conntrack event groups
/// NFNLGRP_CONNTRACK_NEW and NFNLGRP_CONNTRACK_DESTROY (every flow the host let through, when it starts and when it
/// ends, with its byte counters: <c>net.netfilter.nf_conntrack_acct</c> is switched on). Events are attributed by the
/// flow's source address, which the guards tie to one link (<c>fib saddr . iif oif missing drop</c> and the policy
/// chain's <c>ip saddr != SANDBOX drop</c>); a flow keeps the sandbox it started under even when its end is seen after
/// the link is gone. One thread reads; what it sees goes to an <see cref="IConnectionSink"/>.
/// </summary>
/// <remarks>
/// Netlink is written here: no maintained .NET library for nfnetlink_log or ctnetlink is served (nuget.tsv has none;
/// libnetfilter_log/libnetfilter_conntrack are C). Message layouts are linux/netfilter/nfnetlink_log.h and
/// nfnetlink_conntrack.h. What is lost: a flow whose NEW event the socket dropped (ENOBUFS: counted in
/// <see cref="Lost"/> and logged) is still reported at its end if its sandbox's link is known then; denied packets
/// above <see cref="NftRules.LogRate"/> per rule and second are dropped unlogged; retries of one denied flow (TCP SYN
/// retransmits, the same UDP socket) within <see cref="DenyRepeatWindow"/> are one event.
/// </remarks>
internal sealed class ConnectionObserver : IDisposable
{
    /// <summary>Retries of one denied flow (same addresses, ports, protocol) within this are folded into one event.</summary>
    internal static readonly TimeSpan DenyRepeatWindow = TimeSpan.FromSeconds(30);

    private const int NETLINK_NETFILTER = 12;
    private const ushort NLMSG_ERROR = 2;
    private const ushort NLM_F_REQUEST = 0x1;
    private const ushort NLM_F_ACK = 0x4;
    private const byte AF_UNSPEC = 0;
    private const byte AF_INET = 2;

    private const ushort NFNL_SUBSYS_CTNETLINK = 1;
    private const ushort NFNL_SUBSYS_ULOG = 4;
    private const ushort IPCTNL_MSG_CT_NEW = 0;
    private const ushort IPCTNL_MSG_CT_DELETE = 2;
    private const ushort NFULNL_MSG_PACKET = 0;
    private const ushort NFULNL_MSG_CONFIG = 1;
    private const int NFNLGRP_CONNTRACK_NEW = 1;
    private const int NFNLGRP_CONNTRACK_DESTROY = 3;

    private const ushort NFULA_CFG_CMD = 1;
    private const ushort NFULA_CFG_MODE = 2;
    private const ushort NFULA_CFG_TIMEOUT = 3;
    private const byte NFULNL_CFG_CMD_BIND = 1;
    private const byte NFULNL_COPY_PACKET = 2;
    private const ushort NFULA_IFINDEX_OUTDEV = 5;
    private const ushort NFULA_PAYLOAD = 9;

    private const ushort CTA_TUPLE_ORIG = 1;
    private const ushort CTA_TUPLE_IP = 1;
    private const ushort CTA_TUPLE_PROTO = 2;
    private const ushort CTA_IP_V4_SRC = 1;
    private const ushort CTA_IP_V4_DST = 2;
    private const ushort CTA_PROTO_NUM = 1;
    private const ushort CTA_PROTO_SRC_PORT = 2;
    private const ushort CTA_PROTO_DST_PORT = 3;
    private const ushort CTA_STATUS = 3;
    private const ushort CTA_COUNTERS_ORIG = 9;
    private const ushort CTA_COUNTERS_REPLY = 10;
    private const ushort CTA_COUNTERS_BYTES = 2;
    private const ushort CTA_ID = 12;
    private const uint IPS_DST_NAT = 0x20;

    /// <summary>The packet bytes NFLOG copies: the largest IPv4 header (60) and the two ports after it.</summary>
    private const int CopyRange = 64;

    /// <summary>Flows followed at once at most; beyond it a flow is still reported, its end attributed by address.</summary>
    private const int MaxFlows = 65536;

    private const int MaxRecentDenials = 4096;

    /// <summary>
    /// Room for bursts of events while the reader is busy: 4 MiB holds some 15,000 conntrack events (a DESTROY event
    /// with counters is under 300 bytes); beyond it the kernel drops them and recv says ENOBUFS.
    /// </summary>
    private const int ReceiveBuffer = 4 << 20;

    private static readonly TimeSpan ReceiveTimeout = TimeSpan.FromMilliseconds(500);

    private readonly SafeNetlinkSocket _socket;
    private readonly Func<IPAddress, SandboxLink?> _findBySandboxAddress;
    private readonly IPAddress _resolver;
    private readonly IpNetwork _pool;
    private readonly IConnectionSink _sink;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<uint, Flow> _flows = new();
    private readonly Dictionary<DenialKey, long> _recentDenials = [];
    private readonly Thread _reader;
    private volatile bool _stopping;
    private long _lost;

    private ConnectionObserver(SafeNetlinkSocket socket, int logGroup, Func<IPAddress, SandboxLink?> findBySandboxAddress, IPAddress resolver, IpNetwork pool, IConnectionSink sink, ILogger logger)
    {
        _socket = socket;
        LogGroup = logGroup;
        _findBySandboxAddress = findBySandboxAddress;
        _resolver = resolver;
        _pool = pool;
        _sink = sink;
        _logger = logger;
        _reader = new Thread(Read) { IsBackground = true, Name = "paddock-connections" };
    }

    /// <summary>The NFLOG group this observer holds: what <see cref="NftRules"/> logs to.</summary>
    public int LogGroup { get; }

    /// <summary>Events the kernel dropped because the reader fell behind (ENOBUFS), since the start.</summary>
    public long Lost => Interlocked.Read(ref _lost);

    /// <summary>
    /// Opens the socket, takes the first free NFLOG group from <paramref name="preferredGroup"/> on (a group belongs
    /// to one socket per network namespace: other daemons on the host hold theirs), joins the conntrack groups,
    /// switches conntrack's byte accounting on and starts reading. Throws <see cref="IOException"/> when netfilter's
    /// netlink is not there.
    /// </summary>
    public static ConnectionObserver Start(int preferredGroup, Func<IPAddress, SandboxLink?> findBySandboxAddress, IPAddress resolver, IpNetwork pool, IConnectionSink sink, ILogger logger)
    {
        // Counters start with the flows made after this; accounting is a per-namespace setting (the host's here).
        File.WriteAllText("/proc/sys/net/netfilter/nf_conntrack_acct", "1\n");
        var socket = Netlink.Open(NETLINK_NETFILTER, ReceiveTimeout, out var errno);
        if (socket.IsInvalid)
        {
            throw Errno.Exception("socket(AF_NETLINK)", "NETLINK_NETFILTER", errno);
        }
        try
        {
            var group = BindLogGroup(socket, preferredGroup);
            foreach (var ct in (int[])[NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY])
            {
                errno = Netlink.JoinGroup(socket, ct);
                if (errno != 0)
                {
                    throw new IOException($"conntrack events: joining netlink group {ct} failed: {Errno.Describe(errno)} (errno {errno})", errno);
                }
            }
            errno = Netlink.SetReceiveBuffer(socket, ReceiveBuffer);
            if (errno != 0)
            {
                throw new IOException($"conntrack events: SO_RCVBUFFORCE failed: {Errno.Describe(errno)} (errno {errno})", errno);
            }
            var observer = new ConnectionObserver(socket, group, findBySandboxAddress, resolver, pool, sink, logger);
            observer._reader.Start();
            return observer;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Ends every flow the observer follows for <paramref name="sandboxId"/> (its link is gone or going): deletes their
    /// conntrack entries, whose DESTROY events then report each with its counters. Without this a killed sandbox's
    /// open TCP flow would stay in conntrack for days (nf_conntrack_tcp_timeout_established) and be reported only then.
    /// </summary>
    public void EndFlows(string sandboxId)
    {
        var mine = _flows.Where(f => f.Value.SandboxId == sandboxId).ToList();
        if (mine.Count == 0)
        {
            return;
        }
        var m = new NetlinkWriter();
        uint sequence = 0;
        foreach (var (id, flow) in mine)
        {
            m.Message((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST, ++sequence);
            m.Fixed(4)[0] = AF_INET;
            // The original tuple as the kernel sent it (nested attribute and all), and the id, so that only this entry goes.
            m.Bytes(CTA_TUPLE_ORIG | 0x8000, flow.OriginalTuple);
            var idBytes = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(idBytes, id);
            m.Bytes(CTA_ID, idBytes);
        }
        using var socket = Netlink.Open(NETLINK_NETFILTER, TimeSpan.FromSeconds(5), out var errno);
        if (socket.IsInvalid)
        {
            throw Errno.Exception("socket(AF_NETLINK)", "NETLINK_NETFILTER", errno);
        }
        // ctnetlink handles each message while send(2) runs; an entry that ended meanwhile answers ENOENT, unread.
        errno = Netlink.Send(socket, m.Written);
        if (errno != 0)
        {
            throw new IOException($"conntrack: deleting the flows of sandbox {sandboxId} failed: {Errno.Describe(errno)} (errno {errno})", errno);
        }
    }

    private static int BindLogGroup(SafeNetlinkSocket socket, int preferred)
    {
        var reply = new byte[4096];
        for (var i = 0; i < 256; i++)
        {
            var group = (ushort)(((preferred + i - 1) % 65535) + 1);
            var m = new NetlinkWriter();
            ConfigHeader(m, group, 1);
            m.Bytes(NFULA_CFG_CMD, [NFULNL_CFG_CMD_BIND]);
            var error = Request(socket, m, reply);
            if (error is Errno.EBUSY or Errno.EPERM)
            {
                // Held by another socket (another daemon, a test run): EPERM from this kernel, EBUSY from older ones.
                continue;
            }
            if (error != 0)
            {
                throw new IOException($"NFLOG: binding group {group} failed: {Errno.Describe(error)} (errno {error})", error);
            }
            m = new NetlinkWriter();
            ConfigHeader(m, group, 2);
            var mode = new byte[6];
            BinaryPrimitives.WriteUInt32BigEndian(mode, CopyRange);
            mode[4] = NFULNL_COPY_PACKET;
            m.Bytes(NFULA_CFG_MODE, mode);
            // Sent after at most 0.1 s (the default is 1 s) or when the kernel's buffer of the group is full.
            m.UInt32BigEndian(NFULA_CFG_TIMEOUT, 10);
            error = Request(socket, m, reply);
            if (error != 0)
            {
                throw new IOException($"NFLOG: configuring group {group} failed: {Errno.Describe(error)} (errno {error})", error);
            }
            return group;
        }
        throw new IOException($"NFLOG: no free group in {preferred}..{preferred + 255}");
    }

    private static void ConfigHeader(NetlinkWriter m, ushort group, uint sequence)
    {
        m.Message((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, sequence);
        var g = m.Fixed(4);
        g[0] = AF_UNSPEC;
        BinaryPrimitives.WriteUInt16BigEndian(g[2..], group);
    }

    /// <summary>Sends one message and returns the errno of its answer (0: done).</summary>
    private static int Request(SafeNetlinkSocket socket, NetlinkWriter m, byte[] reply)
    {
        var errno = Netlink.Send(socket, m.Written);
        if (errno != 0)
        {
            return errno;
        }
        for (var tries = 0; tries < 8; tries++)
        {
            var received = Netlink.Receive(socket, reply, out errno);
            if (received < 0)
            {
                if (errno == Errno.EINTR)
                {
                    continue;
                }
                return errno;
            }
            if (received >= 20 && BinaryPrimitives.ReadUInt16LittleEndian(reply.AsSpan(4)) == NLMSG_ERROR)
            {
                return -BinaryPrimitives.ReadInt32LittleEndian(reply.AsSpan(16));
            }
        }
        return Errno.EINVAL;
    }

    private void Read()
    {
        var buffer = new byte[64 * 1024];
        while (!_stopping)
        {
            var received = Netlink.Receive(_socket, buffer, out var errno);
            if (received < 0)
            {
                if (errno == Errno.ENOBUFS)
                {
                    // The kernel dropped events because this thread fell behind; how many is not said. Counted once per overflow.
                    Interlocked.Increment(ref _lost);
                    NetworkLog.ConnectionEventsLost(_logger);
                }
                else if (errno is not (Errno.EAGAIN or Errno.EINTR) && !_stopping)
                {
                    NetworkLog.ConnectionReadFailed(_logger, Errno.Describe(errno));
                    Thread.Sleep(ReceiveTimeout);
                }
                continue;
            }
            try
            {
                Dispatch(buffer.AsSpan(0, received));
            }
            catch (Exception ex) when (ex is ArgumentOutOfRangeException or IndexOutOfRangeException or FormatException)
            {
                // A message this parser does not understand: skipped, the thread goes on.
                NetworkLog.ConnectionEventUnreadable(_logger, ex);
            }
        }
    }

    private void Dispatch(ReadOnlySpan<byte> datagram)
    {
        for (var offset = 0; offset + 16 <= datagram.Length;)
        {
            var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(datagram[offset..]);
            if (length < 16 || offset + length > datagram.Length)
            {
                return;
            }
            var type = BinaryPrimitives.ReadUInt16LittleEndian(datagram[(offset + 4)..]);
            if (length >= 20)
            {
                var body = datagram.Slice(offset + 20, length - 20);
                switch (type)
                {
                    case (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
                        OnDropped(body);
                        break;
                    case (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW:
                        OnNew(body);
                        break;
                    case (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE:
                        OnDestroy(body);
                        break;
                }
            }
            offset += (length + 3) & ~3;
        }
    }

    /// <summary>A packet the rules dropped (NFLOG): a denied attempt, unless it repeats one seen just before.</summary>
    private void OnDropped(ReadOnlySpan<byte> attributes)
    {
        ReadOnlySpan<byte> payload = default;
        var forwarded = false;
        foreach (var (type, value) in new Attributes(attributes))
        {
            if (type == NFULA_PAYLOAD)
            {
                payload = value;
            }
            else if (type == NFULA_IFINDEX_OUTDEV)
            {
                forwarded = true;
            }
        }
        if (payload.Length < 20 || payload[0] >> 4 != 4)
        {
            return;
        }
        var headerLength = (payload[0] & 0xf) * 4;
        var protocol = payload[9];
        var source = new IPAddress(payload.Slice(12, 4));
        var destination = new IPAddress(payload.Slice(16, 4));
        int sourcePort = 0, destinationPort = 0;
        var hasPorts = protocol is 6 or 17 && payload.Length >= headerLength + 4;
        if (hasPorts)
        {
            sourcePort = BinaryPrimitives.ReadUInt16BigEndian(payload[headerLength..]);
            destinationPort = BinaryPrimitives.ReadUInt16BigEndian(payload[(headerLength + 2)..]);
        }
        if (_findBySandboxAddress(source) is not { } link)
        {
            return;
        }
        var key = new DenialKey(BinaryPrimitives.ReadUInt32BigEndian(payload[12..]), BinaryPrimitives.ReadUInt32BigEndian(payload[16..]), protocol, (ushort)sourcePort, (ushort)destinationPort);
        var now = Stopwatch.GetTimestamp();
        if (_recentDenials.TryGetValue(key, out var seen) && Stopwatch.GetElapsedTime(seen, now) < DenyRepeatWindow)
        {
            return;
        }
        if (_recentDenials.Count >= MaxRecentDenials)
        {
            _recentDenials.Clear();
        }
        _recentDenials[key] = now;
        _sink.Observed(new ConnectionEvent
        {
            SandboxId = link.SandboxId,
            At = DateTimeOffset.UtcNow,
            Phase = ConnectionPhase.Attempt,
            Verdict = ConnectionVerdicts.Denied,
            Protocol = ProtocolName(protocol),
            Destination = destination,
            Port = hasPorts ? destinationPort : null,
            Note = !forwarded ? "to the host" : _pool.Contains(destination) ? "to another sandbox" : null,
        });
    }

    /// <summary>A flow the host let through (conntrack NEW): an allowed (or proxied) attempt, followed to its end.</summary>
    private void OnNew(ReadOnlySpan<byte> attributes)
    {
        if (ReadFlow(attributes) is not { } f || _findBySandboxAddress(f.Source) is not { } link)
        {
            return;
        }
        if (f.Destination.Equals(_resolver))
        {
            // DNS, redirected to the daemon's own forwarder, which answers by the policy: a lookup, not a connection out.
            return;
        }
        var verdict = (f.Status & IPS_DST_NAT) != 0 ? ConnectionVerdicts.Proxied : ConnectionVerdicts.Allowed;
        if (_flows.Count < MaxFlows)
        {
            _flows[f.Id] = new Flow(link.SandboxId, verdict, Stopwatch.GetTimestamp(), f.OriginalTuple);
        }
        _sink.Observed(new ConnectionEvent
        {
            SandboxId = link.SandboxId,
            At = DateTimeOffset.UtcNow,
            Phase = ConnectionPhase.Attempt,
            Verdict = verdict,
            Protocol = ProtocolName(f.Protocol),
            Destination = f.Destination,
            Port = f.Port,
            Note = verdict == ConnectionVerdicts.Proxied ? "to the egress proxy, which lets only the allowed names through" : null,
        });
    }

    /// <summary>A flow ended (conntrack DESTROY): reported with its byte counters, for the sandbox it started under.</summary>
    private void OnDestroy(ReadOnlySpan<byte> attributes)
    {
        if (ReadFlow(attributes) is not { } f)
        {
            return;
        }
        string sandboxId;
        string verdict;
        TimeSpan? duration = null;
        if (_flows.TryRemove(f.Id, out var flow))
        {
            sandboxId = flow.SandboxId;
            verdict = flow.Verdict;
            duration = Stopwatch.GetElapsedTime(flow.Started);
        }
        else if (_findBySandboxAddress(f.Source) is { } link && !f.Destination.Equals(_resolver))
        {
            // Its start was missed (before this daemon started, or lost to ENOBUFS): the link owning the address now.
            sandboxId = link.SandboxId;
            verdict = (f.Status & IPS_DST_NAT) != 0 ? ConnectionVerdicts.Proxied : ConnectionVerdicts.Allowed;
        }
        else
        {
            return;
        }
        _sink.Observed(new ConnectionEvent
        {
            SandboxId = sandboxId,
            At = DateTimeOffset.UtcNow,
            Phase = ConnectionPhase.End,
            Verdict = verdict,
            Protocol = ProtocolName(f.Protocol),
            Destination = f.Destination,
            Port = f.Port,
            BytesOut = f.BytesOut,
            BytesIn = f.BytesIn,
            Duration = duration,
        });
    }

    private static FlowAttributes? ReadFlow(ReadOnlySpan<byte> attributes)
    {
        IPAddress? source = null, destination = null;
        byte protocol = 0;
        int? port = null;
        uint id = 0, status = 0;
        long? bytesOut = null, bytesIn = null;
        byte[]? original = null;
        foreach (var (type, value) in new Attributes(attributes))
        {
            switch (type)
            {
                case CTA_TUPLE_ORIG:
                    original = value.ToArray();
                    foreach (var (tupleType, tuple) in new Attributes(value))
                    {
                        if (tupleType == CTA_TUPLE_IP)
                        {
                            foreach (var (ipType, ip) in new Attributes(tuple))
                            {
                                if (ipType == CTA_IP_V4_SRC && ip.Length == 4)
                                {
                                    source = new IPAddress(ip);
                                }
                                else if (ipType == CTA_IP_V4_DST && ip.Length == 4)
                                {
                                    destination = new IPAddress(ip);
                                }
                            }
                        }
                        else if (tupleType == CTA_TUPLE_PROTO)
                        {
                            foreach (var (protoType, p) in new Attributes(tuple))
                            {
                                if (protoType == CTA_PROTO_NUM && p.Length >= 1)
                                {
                                    protocol = p[0];
                                }
                                else if (protoType == CTA_PROTO_DST_PORT && p.Length >= 2)
                                {
                                    port = BinaryPrimitives.ReadUInt16BigEndian(p);
                                }
                            }
                        }
                    }
                    break;
                case CTA_STATUS when value.Length >= 4:
                    status = BinaryPrimitives.ReadUInt32BigEndian(value);
                    break;
                case CTA_ID when value.Length >= 4:
                    id = BinaryPrimitives.ReadUInt32BigEndian(value);
                    break;
                case CTA_COUNTERS_ORIG:
                    bytesOut = Bytes(value);
                    break;
                case CTA_COUNTERS_REPLY:
                    bytesIn = Bytes(value);
                    break;
            }
        }
        if (source is null || destination is null || original is null)
        {
            // IPv6, or not a flow: sandboxes have no IPv6 way out (the forward guard drops it).
            return null;
        }
        return new FlowAttributes(id, status, source, destination, protocol, protocol is 6 or 17 or 132 ? port : null, bytesOut, bytesIn, original);
    }

    private static long? Bytes(ReadOnlySpan<byte> counters)
    {
        foreach (var (type, value) in new Attributes(counters))
        {
            if (type == CTA_COUNTERS_BYTES && value.Length >= 8)
            {
                return (long)BinaryPrimitives.ReadUInt64BigEndian(value);
            }
        }
        return null;
    }

    private static string ProtocolName(byte protocol) => protocol switch
    {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        132 => "sctp",
        _ => protocol.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    public void Dispose()
    {
        _stopping = true;
        // The reader wakes within ReceiveTimeout (the socket's receive timeout) and sees the flag.
        _reader.Join(TimeSpan.FromSeconds(10));
        _socket.Dispose();
    }

    private sealed record Flow(string SandboxId, string Verdict, long Started, byte[] OriginalTuple);

    private readonly record struct DenialKey(uint Source, uint Destination, byte Protocol, ushort SourcePort, ushort DestinationPort);

    private sealed record FlowAttributes(uint Id, uint Status, IPAddress Source, IPAddress Destination, byte Protocol, int? Port, long? BytesOut, long? BytesIn, byte[] OriginalTuple);

    private readonly ref struct Attribute(ushort type, ReadOnlySpan<byte> value)
    {
        private readonly ushort _type = type;
        private readonly ReadOnlySpan<byte> _value = value;

        public void Deconstruct(out ushort type, out ReadOnlySpan<byte> value)
        {
            type = _type;
            value = _value;
        }
    }

    /// <summary>The attributes of a netlink message body or of a nested attribute: (type without flag bits, value).</summary>
    private ref struct Attributes(ReadOnlySpan<byte> span)
    {
        private readonly ReadOnlySpan<byte> _span = span;
        private int _offset;

        public Attribute Current { get; private set; }

        public readonly Attributes GetEnumerator() => this;

        public bool MoveNext()
        {
            if (_offset + 4 > _span.Length)
            {
                return false;
            }
            var length = BinaryPrimitives.ReadUInt16LittleEndian(_span[_offset..]);
            var type = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(_span[(_offset + 2)..]) & 0x3fff);
            if (length < 4 || _offset + length > _span.Length)
            {
                return false;
            }
            Current = new Attribute(type, _span.Slice(_offset + 4, length - 4));
            _offset += (length + 3) & ~3;
            return true;
        }
    }
}
