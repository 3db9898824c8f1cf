using System.Buffers.Binary;
using System.Net;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Networking;

/// <summary>
/// A link's nftables rules sent straight to nf_tables over a NETLINK_NETFILTER socket, as one batch (one transaction,
/// like one <c>nft -f</c> script): what <see cref="NftRules.Attach"/> writes as text, for the policies whose
/// <c>n{slot}</c> chain stays empty (no domain allowlist next to a deny list), which is every sandbox that asks for no
/// domains. It spares each cold create an nft process (a process start costs 4.7 ms of CPU on this VM, and nft then
/// reads the whole table, which grows with the sandboxes; issue 6). The rest (the table, policy updates with
/// domains, detach) stays in nft scripts.
/// </summary>
/// <remarks>
/// The expressions are those nft 1.0.6 generates for the same text (<c>nft --debug=netlink</c>): a match on
/// <c>ip saddr</c> in an inet table is "meta nfproto == ipv4, then the 4 bytes at offset 12 of the network header";
/// a CIDR adds a bitwise mask before the compare (nft loads only the whole bytes of a byte-aligned prefix instead:
/// the same match; `nft list` reads both back as the same rule text). Registers, lengths and offsets are 32-bit
/// big-endian attributes.
/// </remarks>
internal static class NftNetlink
{
    private const ushort NFNL_MSG_BATCH_BEGIN = 0x10;
    private const ushort NFNL_MSG_BATCH_END = 0x11;
    private const ushort NFNL_SUBSYS_NFTABLES = 10;
    private const ushort NFT_MSG_NEWCHAIN = 3;
    private const ushort NFT_MSG_NEWRULE = 6;
    private const ushort NFT_MSG_DELRULE = 8;
    private const ushort NFT_MSG_DELCHAIN = 5;
    private const ushort NFT_MSG_NEWSETELEM = 12;
    private const ushort NFT_MSG_DELSETELEM = 14;
    private const ushort NLMSG_ERROR = 2;
    private const ushort NLM_F_REQUEST = 0x1;
    private const ushort NLM_F_ACK = 0x4;
    private const ushort NLM_F_CREATE = 0x400;
    private const ushort NLM_F_APPEND = 0x800;
    private const byte NFPROTO_INET = 1;
    private const byte NFPROTO_IPV4 = 2;
    private const int NETLINK_NETFILTER = 12;
    private const int IFNAMSIZ = 16;

    private const ushort NFTA_CHAIN_TABLE = 1;
    private const ushort NFTA_CHAIN_NAME = 3;
    private const ushort NFTA_RULE_TABLE = 1;
    private const ushort NFTA_RULE_CHAIN = 2;
    private const ushort NFTA_RULE_EXPRESSIONS = 4;
    private const ushort NFTA_LIST_ELEM = 1;
    private const ushort NFTA_EXPR_NAME = 1;
    private const ushort NFTA_EXPR_DATA = 2;
    private const ushort NFTA_META_DREG = 1;
    private const ushort NFTA_META_KEY = 2;
    private const uint NFT_META_NFPROTO = 15;
    private const ushort NFTA_CMP_SREG = 1;
    private const ushort NFTA_CMP_OP = 2;
    private const ushort NFTA_CMP_DATA = 3;
    private const uint NFT_CMP_EQ = 0;
    private const uint NFT_CMP_NEQ = 1;
    private const ushort NFTA_PAYLOAD_DREG = 1;
    private const ushort NFTA_PAYLOAD_BASE = 2;
    private const ushort NFTA_PAYLOAD_OFFSET = 3;
    private const ushort NFTA_PAYLOAD_LEN = 4;
    private const uint NFT_PAYLOAD_NETWORK_HEADER = 1;
    private const ushort NFTA_BITWISE_SREG = 1;
    private const ushort NFTA_BITWISE_DREG = 2;
    private const ushort NFTA_BITWISE_LEN = 3;
    private const ushort NFTA_BITWISE_MASK = 4;
    private const ushort NFTA_BITWISE_XOR = 5;
    private const ushort NFTA_IMMEDIATE_DREG = 1;
    private const ushort NFTA_IMMEDIATE_DATA = 2;
    private const ushort NFTA_DATA_VALUE = 1;
    private const ushort NFTA_DATA_VERDICT = 2;
    private const ushort NFTA_VERDICT_CODE = 1;
    private const ushort NFTA_VERDICT_CHAIN = 2;
    private const ushort NFTA_SET_ELEM_LIST_TABLE = 1;
    private const ushort NFTA_SET_ELEM_LIST_SET = 2;
    private const ushort NFTA_SET_ELEM_LIST_ELEMENTS = 3;
    private const ushort NFTA_SET_ELEM_KEY = 1;
    private const ushort NFTA_SET_ELEM_DATA = 2;
    private const ushort NFTA_LIMIT_RATE = 1;
    private const ushort NFTA_LIMIT_UNIT = 2;
    private const ushort NFTA_LIMIT_BURST = 3;
    private const ushort NFTA_LIMIT_TYPE = 4;
    private const ushort NFTA_LIMIT_FLAGS = 5;
    private const uint NFT_LIMIT_PKTS = 0;
    private const ushort NFTA_LOG_GROUP = 1;
    private const uint NFT_REG_VERDICT = 0;
    private const uint NFT_REG_1 = 1;
    private const uint NF_DROP = 0;
    private const uint NF_ACCEPT = 1;
    private const uint NFT_JUMP = unchecked((uint)-3);

    private const uint IpSourceOffset = 12;
    private const uint IpDestinationOffset = 16;

    private static readonly TimeSpan ReceiveTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Whether <see cref="Attach"/> can express the link's rules (the <c>n{slot}</c> chain stays empty).</summary>
    public static bool CanAttach(SandboxLink link) => link.Policy.AllowDomains.Count == 0 || link.Policy.DenyOut.Count == 0;

    /// <summary>
    /// The batch for <see cref="NftRules.Attach"/>: chains <c>f{slot}</c> and <c>n{slot}</c> (made if missing, then
    /// flushed), the policy rules in <c>f{slot}</c>, and the link's elements in the maps <c>links</c> and
    /// <c>nat_links</c>; one transaction. Throws <see cref="IOException"/> with the kernel's errno (ENOENT: the table
    /// or a map is gone) when nf_tables refuses it, in which case nothing of it was applied.
    /// </summary>
    public static void Attach(string table, SandboxLink link, int logGroup)
    {
        if (!CanAttach(link))
        {
            throw new ArgumentException("a policy with a domain allowlist next to a deny list needs the nft script", nameof(link));
        }
        var (f, n) = ChainNames(link.Slot);
        var m = new NetlinkWriter();
        uint sequence = 0;
        Batch(m, NFNL_MSG_BATCH_BEGIN, ++sequence);
        Chains(m, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_ACK, table, f, n, ref sequence);
        // The chains may be left from a crash, with rules.
        FlushChains(m, table, f, n, ref sequence);
        // ip saddr != SANDBOX drop
        Rule(m, table, f, ++sequence, NF_DROP, expressions =>
        {
            MatchAddress(expressions, IpSourceOffset, link.SandboxAddress.GetAddressBytes(), 32, NFT_CMP_NEQ);
        });
        foreach (var net in link.Policy.AllowOut)
        {
            Rule(m, table, f, ++sequence, NF_ACCEPT, expressions => MatchNetwork(expressions, net));
        }
        foreach (var net in link.Policy.DenyOut)
        {
            // ip daddr NET limit rate R/second burst B packets log group G (no verdict: the next rule drops)
            Rule(m, table, f, ++sequence, null, expressions =>
            {
                MatchNetwork(expressions, net);
                LimitAndLog(expressions, logGroup);
            });
            Rule(m, table, f, ++sequence, NF_DROP, expressions => MatchNetwork(expressions, net));
        }
        Rule(m, table, f, ++sequence, NF_ACCEPT, _ => { });
        Element(m, NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, "links", link.HostInterface, f, ++sequence);
        Element(m, NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, "nat_links", link.HostInterface, n, ++sequence);
        var last = sequence;
        Batch(m, NFNL_MSG_BATCH_END, ++sequence);
        Send(m.Written, last);
    }

    /// <summary>
    /// The batch for <see cref="NftRules.Detach"/>: removes the link's map elements and chains whether or not they
    /// exist (each piece is added first, a no-op when it is there, so that no delete fails on a piece a crash left
    /// out). Throws <see cref="IOException"/> with errno ENOENT when the table or a map is gone.
    /// </summary>
    public static void Detach(string table, int slot, string hostInterface)
    {
        var (f, n) = ChainNames(slot);
        var m = new NetlinkWriter();
        uint sequence = 0;
        Batch(m, NFNL_MSG_BATCH_BEGIN, ++sequence);
        Chains(m, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_ACK, table, f, n, ref sequence);
        Element(m, NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, "links", hostInterface, f, ++sequence);
        Element(m, NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, "nat_links", hostInterface, n, ++sequence);
        Element(m, NFT_MSG_DELSETELEM, 0, table, "links", hostInterface, null, ++sequence);
        Element(m, NFT_MSG_DELSETELEM, 0, table, "nat_links", hostInterface, null, ++sequence);
        FlushChains(m, table, f, n, ref sequence);
        Chains(m, NFT_MSG_DELCHAIN, NLM_F_ACK, table, f, n, ref sequence);
        var last = sequence;
        Batch(m, NFNL_MSG_BATCH_END, ++sequence);
        Send(m.Written, last);
    }

    /// <summary>A link's two chains: its forward policy (f) and its NAT/redirect chain (n), named by its slot.</summary>
    private static (string Forward, string Nat) ChainNames(int slot)
    {
        var number = slot.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return ("f" + number, "n" + number);
    }

    /// <summary>One chain message (new or delete) for each of the link's two chains.</summary>
    private static void Chains(NetlinkWriter m, ushort type, ushort flags, string table, string f, string n, ref uint sequence)
    {
        foreach (var chain in (string[])[f, n])
        {
            Header(m, type, flags, ++sequence);
            m.String(NFTA_CHAIN_TABLE, table);
            m.String(NFTA_CHAIN_NAME, chain);
        }
    }

    /// <summary>A delete of every rule of each of the link's two chains ("flush chain").</summary>
    private static void FlushChains(NetlinkWriter m, string table, string f, string n, ref uint sequence)
    {
        foreach (var chain in (string[])[f, n])
        {
            Header(m, NFT_MSG_DELRULE, NLM_F_ACK, ++sequence);
            m.String(NFTA_RULE_TABLE, table);
            m.String(NFTA_RULE_CHAIN, chain);
        }
    }

    private static void Send(ReadOnlySpan<byte> batch, uint lastSequence)
    {
        using var socket = Netlink.Open(NETLINK_NETFILTER, ReceiveTimeout, out var errno);
        if (socket.IsInvalid)
        {
            throw Errno.Exception("socket(AF_NETLINK)", "NETLINK_NETFILTER", errno);
        }
        errno = Netlink.Send(socket, batch);
        if (errno != 0)
        {
            throw new IOException($"nf_tables: send of a link's batch failed: {Errno.Describe(errno)} (errno {errno})", errno);
        }
        // Every message asked for an answer: the failures come first, in order, and the last message's answer ends
        // the batch's, whether it was applied or aborted. Bounded by the message count and the receive timeout.
        var reply = new byte[16 * 1024];
        var firstError = 0;
        for (var datagrams = 0; datagrams < 1024; datagrams++)
        {
            int received;
            var tries = 0;
            do
            {
                received = Netlink.Receive(socket, reply, out errno);
            }
            while (received < 0 && errno == Errno.EINTR && ++tries < 8);
            if (received < 0)
            {
                throw new IOException($"nf_tables: no answer to a link's batch: {Errno.Describe(errno)} (errno {errno})", errno);
            }
            var datagram = reply.AsSpan(0, received);
            for (var offset = 0; offset + 20 <= datagram.Length;)
            {
                var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(datagram[offset..]);
                var type = BinaryPrimitives.ReadUInt16LittleEndian(datagram[(offset + 4)..]);
                if (length < 16 || offset + length > datagram.Length)
                {
                    throw new IOException("nf_tables: malformed answer to a link's batch");
                }
                if (type == NLMSG_ERROR)
                {
                    var error = -BinaryPrimitives.ReadInt32LittleEndian(datagram[(offset + 16)..]);
                    // The answered message's header follows the error code.
                    var answered = length >= 36 ? BinaryPrimitives.ReadUInt32LittleEndian(datagram[(offset + 20 + 8)..]) : 0;
                    if (error != 0 && firstError == 0)
                    {
                        firstError = error;
                    }
                    if (answered == lastSequence)
                    {
                        if (firstError != 0)
                        {
                            throw new IOException($"nf_tables refused a link's rules: {Errno.Describe(firstError)} (errno {firstError})", firstError);
                        }
                        return;
                    }
                }
                offset += (length + 3) & ~3;
            }
        }
        throw new IOException("nf_tables: no final answer to a link's batch");
    }

    private static void Batch(NetlinkWriter m, ushort type, uint sequence)
    {
        m.Message(type, NLM_F_REQUEST, sequence);
        var g = m.Fixed(4);
        BinaryPrimitives.WriteUInt16BigEndian(g[2..], NFNL_SUBSYS_NFTABLES);
    }

    private static void Header(NetlinkWriter m, ushort message, ushort flags, uint sequence)
    {
        m.Message((ushort)((NFNL_SUBSYS_NFTABLES << 8) | message), (ushort)(NLM_F_REQUEST | flags), sequence);
        // struct nfgenmsg: family, version 0, resource id 0.
        m.Fixed(4)[0] = NFPROTO_INET;
    }

    private static void Rule(NetlinkWriter m, string table, string chain, uint sequence, uint? verdict, Action<NetlinkWriter> match)
    {
        Header(m, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK, sequence);
        m.String(NFTA_RULE_TABLE, table);
        m.String(NFTA_RULE_CHAIN, chain);
        var list = m.Nest(NFTA_RULE_EXPRESSIONS);
        match(m);
        if (verdict is not { } code)
        {
            m.End(list);
            return;
        }
        Expression(m, "immediate", () =>
        {
            m.UInt32BigEndian(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
            var data = m.Nest(NFTA_IMMEDIATE_DATA);
            var v = m.Nest(NFTA_DATA_VERDICT);
            m.UInt32BigEndian(NFTA_VERDICT_CODE, code);
            m.End(v);
            m.End(data);
        });
        m.End(list);
    }

    /// <summary>
    /// <c>limit rate NftRules.LogRate/second burst NftRules.LogBurst packets log group G</c>, as nft 1.0.6 sends it
    /// (<c>nft --debug=netlink</c>: limit type packets, flags 0; log with the group only).
    /// </summary>
    private static void LimitAndLog(NetlinkWriter m, int logGroup)
    {
        Expression(m, "limit", () =>
        {
            m.UInt64BigEndian(NFTA_LIMIT_RATE, NftRules.LogRate);
            m.UInt64BigEndian(NFTA_LIMIT_UNIT, 1);
            m.UInt32BigEndian(NFTA_LIMIT_BURST, NftRules.LogBurst);
            m.UInt32BigEndian(NFTA_LIMIT_TYPE, NFT_LIMIT_PKTS);
            m.UInt32BigEndian(NFTA_LIMIT_FLAGS, 0);
        });
        Expression(m, "log", () => m.UInt16BigEndian(NFTA_LOG_GROUP, checked((ushort)logGroup)));
    }

    private static void MatchNetwork(NetlinkWriter m, IpNetwork net) =>
        MatchAddress(m, IpDestinationOffset, IpNetwork.ToAddress(net.Address).GetAddressBytes(), net.PrefixLength, NFT_CMP_EQ);

    /// <summary>meta nfproto == ipv4; the address at <paramref name="offset"/> (masked to the prefix) compared by <paramref name="op"/>.</summary>
    private static void MatchAddress(NetlinkWriter m, uint offset, byte[] address, int prefixLength, uint op)
    {
        Expression(m, "meta", () =>
        {
            m.UInt32BigEndian(NFTA_META_DREG, NFT_REG_1);
            m.UInt32BigEndian(NFTA_META_KEY, NFT_META_NFPROTO);
        });
        Compare(m, NFT_CMP_EQ, [NFPROTO_IPV4]);
        Expression(m, "payload", () =>
        {
            m.UInt32BigEndian(NFTA_PAYLOAD_DREG, NFT_REG_1);
            m.UInt32BigEndian(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
            m.UInt32BigEndian(NFTA_PAYLOAD_OFFSET, offset);
            m.UInt32BigEndian(NFTA_PAYLOAD_LEN, 4);
        });
        if (prefixLength < 32)
        {
            var mask = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(mask, prefixLength == 0 ? 0 : uint.MaxValue << (32 - prefixLength));
            Expression(m, "bitwise", () =>
            {
                m.UInt32BigEndian(NFTA_BITWISE_SREG, NFT_REG_1);
                m.UInt32BigEndian(NFTA_BITWISE_DREG, NFT_REG_1);
                m.UInt32BigEndian(NFTA_BITWISE_LEN, 4);
                Data(m, NFTA_BITWISE_MASK, mask);
                Data(m, NFTA_BITWISE_XOR, new byte[4]);
            });
            for (var i = 0; i < 4; i++)
            {
                address[i] &= mask[i];
            }
        }
        Compare(m, op, address);
    }

    private static void Compare(NetlinkWriter m, uint op, byte[] value) => Expression(m, "cmp", () =>
    {
        m.UInt32BigEndian(NFTA_CMP_SREG, NFT_REG_1);
        m.UInt32BigEndian(NFTA_CMP_OP, op);
        Data(m, NFTA_CMP_DATA, value);
    });

    private static void Data(NetlinkWriter m, ushort type, ReadOnlySpan<byte> value)
    {
        var data = m.Nest(type);
        m.Bytes(NFTA_DATA_VALUE, value);
        m.End(data);
    }

    private static void Expression(NetlinkWriter m, string name, Action body)
    {
        var element = m.Nest(NFTA_LIST_ELEM);
        m.String(NFTA_EXPR_NAME, name);
        var data = m.Nest(NFTA_EXPR_DATA);
        body();
        m.End(data);
        m.End(element);
    }

    /// <summary>
    /// <c>add element inet TABLE SET { "INTERFACE" : jump CHAIN }</c>, or with <paramref name="chain"/> null
    /// (<see cref="NFT_MSG_DELSETELEM"/>) <c>delete element inet TABLE SET { "INTERFACE" }</c>.
    /// </summary>
    private static void Element(NetlinkWriter m, ushort message, ushort flags, string table, string set, string interfaceName, string? chain, uint sequence)
    {
        Header(m, message, (ushort)(flags | NLM_F_ACK), sequence);
        m.String(NFTA_SET_ELEM_LIST_TABLE, table);
        m.String(NFTA_SET_ELEM_LIST_SET, set);
        var elements = m.Nest(NFTA_SET_ELEM_LIST_ELEMENTS);
        var element = m.Nest(NFTA_LIST_ELEM);
        // The ifname type is IFNAMSIZ bytes, the name zero-padded.
        var key = new byte[IFNAMSIZ];
        System.Text.Encoding.ASCII.GetBytes(interfaceName, key);
        Data(m, NFTA_SET_ELEM_KEY, key);
        if (chain is not null)
        {
            var data = m.Nest(NFTA_SET_ELEM_DATA);
            var verdict = m.Nest(NFTA_DATA_VERDICT);
            m.UInt32BigEndian(NFTA_VERDICT_CODE, NFT_JUMP);
            m.String(NFTA_VERDICT_CHAIN, chain);
            m.End(verdict);
            m.End(data);
        }
        m.End(element);
        m.End(elements);
    }
}
