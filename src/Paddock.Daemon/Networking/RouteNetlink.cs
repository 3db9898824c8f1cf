using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Networking;

/// <summary>
/// The few rtnetlink(7) requests a sandbox link needs (a veth pair with one end in another namespace, an IPv4
/// address, link up, a default route, a link's removal), each sent over one NETLINK_ROUTE socket and answered by the
/// kernel's acknowledgement. This is what ip(8) sends for the same commands, without a process per command: each
/// process start costs 4.7 ms of CPU on this VM before it does anything (issue 6, note 10), and the attach used to
/// start nsenter, ip and ip again on every cold create.
/// </summary>
/// <remarks>
/// Every call is synchronous: rtnetlink handles a request inside send(2) and queues its answer before send returns,
/// so a request costs a few system calls and the reply is read at once (bounded by the socket's receive timeout).
/// </remarks>
internal sealed class RouteNetlink : IDisposable
{
    // linux/rtnetlink.h, linux/netlink.h, linux/if_link.h, linux/veth.h, linux/if_addr.h
    private const ushort NLMSG_ERROR = 2;
    private const ushort NLMSG_DONE = 3;
    private const ushort RTM_NEWLINK = 16;
    private const ushort RTM_DELLINK = 17;
    private const ushort RTM_GETLINK = 18;
    private const ushort RTM_NEWADDR = 20;
    private const ushort RTM_NEWROUTE = 24;
    private const ushort NLM_F_REQUEST = 0x1;
    private const ushort NLM_F_ACK = 0x4;
    private const ushort NLM_F_EXCL = 0x200;
    private const ushort NLM_F_CREATE = 0x400;
    private const ushort IFLA_IFNAME = 3;
    private const ushort IFLA_LINKINFO = 18;
    private const ushort IFLA_NET_NS_FD = 28;
    private const ushort IFLA_INFO_KIND = 1;
    private const ushort IFLA_INFO_DATA = 2;
    private const ushort VETH_INFO_PEER = 1;
    private const ushort IFA_ADDRESS = 1;
    private const ushort IFA_LOCAL = 2;
    private const ushort RTA_OIF = 4;
    private const ushort RTA_GATEWAY = 5;
    private const byte AF_INET = 2;
    private const byte RT_TABLE_MAIN = 254;
    private const byte RTPROT_BOOT = 3;
    private const byte RT_SCOPE_UNIVERSE = 0;
    private const byte RTN_UNICAST = 1;
    private const uint IFF_UP = 0x1;
    private const int ENODEV = 19;
    private const int IfInfoSize = 16;
    private const int IfAddrSize = 8;
    private const int RtMsgSize = 12;

    private static readonly TimeSpan ReceiveTimeout = TimeSpan.FromSeconds(10);

    private readonly SafeNetlinkSocket _socket;
    private readonly string _where;
    private readonly byte[] _reply = new byte[32 * 1024];
    private uint _sequence;

    private RouteNetlink(SafeNetlinkSocket socket, string where)
    {
        _socket = socket;
        _where = where;
    }

    /// <summary>A socket in the calling thread's (the daemon's) network namespace.</summary>
    public static RouteNetlink OpenHere()
    {
        var socket = Netlink.Open(Netlink.NETLINK_ROUTE, ReceiveTimeout, out var errno);
        return socket.IsInvalid ? throw Errno.Exception("socket(AF_NETLINK)", "in the daemon's network namespace", errno) : new RouteNetlink(socket, "host");
    }

    /// <summary>
    /// A socket in the network namespace <paramref name="ns"/> refers to: the calling thread enters the namespace,
    /// makes the socket and returns to <paramref name="home"/> at once, synchronously, so no other work ever runs on
    /// the thread while it is inside (as NetworkNamespaces.CreateTcpSocket does). Throws
    /// <see cref="IOException"/> when the namespace cannot be entered (EINVAL: not a network namespace any more).
    /// </summary>
    public static RouteNetlink OpenIn(SafeFileHandle ns, SafeFileHandle home, string where)
    {
        var errno = Namespaces.SetNs(ns, Namespaces.CloneNewNet);
        if (errno != 0)
        {
            throw Errno.Exception("setns", where, errno);
        }
        SafeNetlinkSocket socket;
        int openErrno;
        try
        {
            socket = Netlink.Open(Netlink.NETLINK_ROUTE, ReceiveTimeout, out openErrno);
        }
        finally
        {
            var back = Namespaces.SetNs(home, Namespaces.CloneNewNet);
            if (back != 0)
            {
                // A thread-pool thread left in a sandbox's namespace would put unrelated host traffic in the sandbox.
                Environment.FailFast($"paddockd: cannot return to the daemon's network namespace after entering {where}: {Errno.Describe(back)}");
            }
        }
        return socket.IsInvalid ? throw Errno.Exception("socket(AF_NETLINK)", where, openErrno) : new RouteNetlink(socket, where);
    }

    /// <summary>
    /// <c>ip link add NAME type veth peer name PEER netns NS</c>: both ends are made in one request, the peer
    /// directly in the namespace <paramref name="peerNamespace"/> refers to. Both start down.
    /// </summary>
    public void CreateVethPair(string name, string peerName, SafeFileHandle peerNamespace)
    {
        var added = false;
        peerNamespace.DangerousAddRef(ref added);
        try
        {
            var m = new NetlinkWriter();
            m.Message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ++_sequence);
            IfInfo(m, 0, 0, 0);
            m.String(IFLA_IFNAME, name);
            var linkInfo = m.Begin(IFLA_LINKINFO);
            m.String(IFLA_INFO_KIND, "veth", terminate: false);
            var data = m.Begin(IFLA_INFO_DATA);
            var peer = m.Begin(VETH_INFO_PEER);
            IfInfo(m, 0, 0, 0);
            m.String(IFLA_IFNAME, peerName);
            m.UInt32(IFLA_NET_NS_FD, (uint)peerNamespace.DangerousGetHandle());
            m.End(peer);
            m.End(data);
            m.End(linkInfo);
            Request(m.Written, $"create veth {name} (peer {peerName})");
        }
        finally
        {
            if (added)
            {
                peerNamespace.DangerousRelease();
            }
        }
    }

    /// <summary>The index of interface <paramref name="name"/>, or 0 when there is none.</summary>
    public int IndexOf(string name)
    {
        var m = new NetlinkWriter();
        var sequence = ++_sequence;
        m.Message(RTM_GETLINK, NLM_F_REQUEST, sequence);
        IfInfo(m, 0, 0, 0);
        m.String(IFLA_IFNAME, name);
        Send(m.Written, $"find {name}");
        // Bounded: the answer is one message (the link) or one error; other datagrams would be stale answers.
        for (var attempt = 0; attempt < 8; attempt++)
        {
            var datagram = ReceiveDatagram($"find {name}");
            for (var offset = 0; offset + 16 <= datagram.Length;)
            {
                var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(datagram[offset..]);
                var type = BinaryPrimitives.ReadUInt16LittleEndian(datagram[(offset + 4)..]);
                var seq = BinaryPrimitives.ReadUInt32LittleEndian(datagram[(offset + 8)..]);
                if (length < 16 || offset + length > datagram.Length)
                {
                    throw new IOException($"rtnetlink ({_where}): malformed answer to find {name}");
                }
                if (seq == sequence)
                {
                    if (type == NLMSG_ERROR)
                    {
                        var error = -BinaryPrimitives.ReadInt32LittleEndian(datagram[(offset + 16)..]);
                        return error == ENODEV ? 0 : throw Failed($"find {name}", error);
                    }
                    if (type == RTM_NEWLINK && length >= 16 + IfInfoSize)
                    {
                        return BinaryPrimitives.ReadInt32LittleEndian(datagram[(offset + 16 + 4)..]);
                    }
                }
                offset += Align(length);
            }
        }
        throw new IOException($"rtnetlink ({_where}): no answer to find {name}");
    }

    /// <summary><c>ip addr add ADDRESS/PREFIX dev INDEX</c> (IPv4).</summary>
    public void AddAddress(int index, IPAddress address, int prefixLength)
    {
        var bytes = V4(address);
        var m = new NetlinkWriter();
        m.Message(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ++_sequence);
        IfAddr(m, AF_INET, (byte)prefixLength, RT_SCOPE_UNIVERSE, index);
        m.Bytes(IFA_LOCAL, bytes);
        m.Bytes(IFA_ADDRESS, bytes);
        Request(m.Written, $"add address {address}/{prefixLength} to interface {index}");
    }

    /// <summary><c>ip link set INDEX up</c>.</summary>
    public void SetUp(int index)
    {
        var m = new NetlinkWriter();
        m.Message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, ++_sequence);
        IfInfo(m, index, IFF_UP, IFF_UP);
        Request(m.Written, $"set interface {index} up");
    }

    /// <summary><c>ip route add default via GATEWAY dev INDEX</c> (IPv4, main table).</summary>
    public void AddDefaultRoute(IPAddress gateway, int index)
    {
        var m = new NetlinkWriter();
        m.Message(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ++_sequence);
        RtMsg(m, AF_INET, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST);
        m.Bytes(RTA_GATEWAY, V4(gateway));
        m.UInt32(RTA_OIF, (uint)index);
        Request(m.Written, $"add default route via {gateway}");
    }

    /// <summary><c>ip link del NAME</c> (a veth takes its peer with it). Returns false when there is no such interface.</summary>
    public bool DeleteLink(string name)
    {
        var m = new NetlinkWriter();
        m.Message(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, ++_sequence);
        IfInfo(m, 0, 0, 0);
        m.String(IFLA_IFNAME, name);
        var error = RequestErrno(m.Written, $"delete {name}");
        return error switch
        {
            0 => true,
            ENODEV => false,
            _ => throw Failed($"delete {name}", error),
        };
    }

    private void Request(ReadOnlySpan<byte> message, string what)
    {
        var error = RequestErrno(message, what);
        if (error != 0)
        {
            throw Failed(what, error);
        }
    }

    /// <summary>Sends a request that asked for an acknowledgement; returns the kernel's errno for it (0: done).</summary>
    private int RequestErrno(ReadOnlySpan<byte> message, string what)
    {
        var sequence = BinaryPrimitives.ReadUInt32LittleEndian(message[8..]);
        Send(message, what);
        // Bounded: the acknowledgement is the next message of this sequence; anything else is a stale answer.
        for (var attempt = 0; attempt < 8; attempt++)
        {
            var datagram = ReceiveDatagram(what);
            for (var offset = 0; offset + 16 <= datagram.Length;)
            {
                var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(datagram[offset..]);
                var type = BinaryPrimitives.ReadUInt16LittleEndian(datagram[(offset + 4)..]);
                var seq = BinaryPrimitives.ReadUInt32LittleEndian(datagram[(offset + 8)..]);
                if (length < 16 || offset + length > datagram.Length)
                {
                    throw new IOException($"rtnetlink ({_where}): malformed answer to {what}");
                }
                if (seq == sequence && type == NLMSG_ERROR && length >= 20)
                {
                    return -BinaryPrimitives.ReadInt32LittleEndian(datagram[(offset + 16)..]);
                }
                if (seq == sequence && type == NLMSG_DONE)
                {
                    return 0;
                }
                offset += Align(length);
            }
        }
        throw new IOException($"rtnetlink ({_where}): no acknowledgement of {what}");
    }

    private void Send(ReadOnlySpan<byte> message, string what)
    {
        var errno = Netlink.Send(_socket, message);
        if (errno != 0)
        {
            throw new IOException($"rtnetlink ({_where}): send of {what} failed: {Errno.Describe(errno)} (errno {errno})", errno);
        }
    }

    private ReadOnlySpan<byte> ReceiveDatagram(string what)
    {
        int received;
        int errno;
        // EINTR retried a bounded number of times: a signal during recv(2) is no answer.
        var tries = 0;
        do
        {
            received = Netlink.Receive(_socket, _reply, out errno);
        }
        while (received < 0 && errno == Errno.EINTR && ++tries < 8);
        if (received < 0)
        {
            throw new IOException($"rtnetlink ({_where}): no answer to {what}: {Errno.Describe(errno)} (errno {errno})", errno);
        }
        return _reply.AsSpan(0, received);
    }

    private IOException Failed(string what, int errno) =>
        new($"rtnetlink ({_where}): {what} failed: {Errno.Describe(errno)} (errno {errno})", errno);

    private static byte[] V4(IPAddress address) => address.AddressFamily == AddressFamily.InterNetwork
        ? address.GetAddressBytes()
        : throw new ArgumentException($"{address} is not an IPv4 address");

    private static int Align(int length) => (length + 3) & ~3;

    /// <summary>struct ifinfomsg (AF_UNSPEC).</summary>
    private static void IfInfo(NetlinkWriter m, int index, uint flags, uint change)
    {
        var s = m.Fixed(IfInfoSize);
        BinaryPrimitives.WriteInt32LittleEndian(s[4..], index);
        BinaryPrimitives.WriteUInt32LittleEndian(s[8..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(s[12..], change);
    }

    /// <summary>struct ifaddrmsg.</summary>
    private static void IfAddr(NetlinkWriter m, byte family, byte prefixLength, byte scope, int index)
    {
        var s = m.Fixed(IfAddrSize);
        s[0] = family;
        s[1] = prefixLength;
        s[3] = scope;
        BinaryPrimitives.WriteInt32LittleEndian(s[4..], index);
    }

    /// <summary>struct rtmsg.</summary>
    private static void RtMsg(NetlinkWriter m, byte family, byte destinationLength, byte table, byte protocol, byte scope, byte type)
    {
        var s = m.Fixed(RtMsgSize);
        s[0] = family;
        s[1] = destinationLength;
        s[4] = table;
        s[5] = protocol;
        s[6] = scope;
        s[7] = type;
    }

    public void Dispose() => _socket.Dispose();
}
