using System.Buffers.Binary;
using System.Text;

namespace Paddock.Daemon.Networking;

/// <summary>The one question of a DNS query, as <see cref="DnsWire.TryReadQuestion"/> found it.</summary>
/// <param name="Length">Bytes of the question section (name, type, class) from offset 12.</param>
/// <param name="Name">The name in lower case without the root dot, or null when a label holds anything but letters,
/// digits, '-' and '_' (no host name, so on no allowlist).</param>
internal readonly record struct DnsQuestion(int Length, string? Name, ushort Type, ushort Class);

/// <summary>
/// The few DNS wire pieces the forwarder writes itself (RFC 1035 4.1): queries to the daemon's resolvers, and the
/// answers it gives without asking them (REFUSED, NXDOMAIN, SERVFAIL, a truncated answer). ARSoft.Tools.Net parses
/// what comes in, but its encoder is internal to the library, and a forwarder that copies the sandbox's question
/// bytes into a query of its own sends upstream nothing but the question the policy looked at.
/// </summary>
internal static class DnsWire
{
    public const int HeaderLength = 12;

    /// <summary>The UDP payload a client without EDNS may receive (RFC 1035 4.2.1).</summary>
    public const int ClassicUdpLimit = 512;

    /// <summary>What the forwarder offers and asks for over UDP with EDNS: the DNS flag day 2020 size, below common MTUs.</summary>
    public const int EdnsUdpLimit = 1232;

    public const byte RcodeNoError = 0;
    public const byte RcodeFormErr = 1;
    public const byte RcodeServFail = 2;
    public const byte RcodeNxDomain = 3;
    public const byte RcodeNotImp = 4;
    public const byte RcodeRefused = 5;

    public const ushort TypeA = 1;
    public const ushort ClassIn = 1;

    private const int MaxNameBytes = 255; // RFC 1035 3.1, with the root label

    public static ushort Id(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16BigEndian(message);

    public static void SetId(Span<byte> message, ushort id) => BinaryPrimitives.WriteUInt16BigEndian(message, id);

    public static bool IsResponse(ReadOnlySpan<byte> message) => (message[2] & 0x80) != 0;

    public static bool IsTruncated(ReadOnlySpan<byte> message) => (message[2] & 0x02) != 0;

    public static int Opcode(ReadOnlySpan<byte> message) => (message[2] >> 3) & 0x0f;

    public static int QuestionCount(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16BigEndian(message[4..]);

    /// <summary>
    /// Reads the question at offset 12: labels of 1-63 bytes without compression (a query has nothing earlier to
    /// point at), at most 255 bytes of name, then type and class. False when it is not that.
    /// </summary>
    public static bool TryReadQuestion(ReadOnlySpan<byte> message, out DnsQuestion question)
    {
        question = default;
        var offset = HeaderLength;
        var name = new StringBuilder();
        var hostName = true;
        while (true)
        {
            if (offset >= message.Length || offset - HeaderLength >= MaxNameBytes)
            {
                return false;
            }
            int length = message[offset++];
            if (length == 0)
            {
                break;
            }
            if (length > 63 || offset + length > message.Length)
            {
                return false; // a compression pointer (0xC0) or a reserved label type
            }
            if (name.Length > 0)
            {
                name.Append('.');
            }
            foreach (var b in message.Slice(offset, length))
            {
                var c = (char)b;
                if (char.IsAsciiLetterOrDigit(c) || c is '-' or '_')
                {
                    name.Append(char.ToLowerInvariant(c));
                }
                else
                {
                    hostName = false;
                }
            }
            offset += length;
        }
        if (offset - HeaderLength > MaxNameBytes || offset + 4 > message.Length)
        {
            return false;
        }
        var type = BinaryPrimitives.ReadUInt16BigEndian(message[offset..]);
        var cls = BinaryPrimitives.ReadUInt16BigEndian(message[(offset + 2)..]);
        question = new DnsQuestion(offset + 4 - HeaderLength, hostName ? name.ToString() : null, type, cls);
        return true;
    }

    /// <summary>The question section for <paramref name="name"/> (a host name: letters, digits, '-', '_', dots).</summary>
    public static byte[] Question(string name, ushort type)
    {
        var bytes = new List<byte>(name.Length + 6);
        foreach (var label in name.TrimEnd('.').Split('.'))
        {
            if (label.Length is 0 or > 63)
            {
                throw new ArgumentException($"'{name}' is not a host name", nameof(name));
            }
            bytes.Add((byte)label.Length);
            bytes.AddRange(Encoding.ASCII.GetBytes(label));
        }
        bytes.Add(0);
        bytes.AddRange([(byte)(type >> 8), (byte)type, 0, (byte)ClassIn]);
        return bytes.ToArray();
    }

    /// <summary>A recursive query with <paramref name="question"/> and an EDNS OPT record offering <see cref="EdnsUdpLimit"/> bytes.</summary>
    public static byte[] Query(ushort id, ReadOnlySpan<byte> question)
    {
        var message = new byte[HeaderLength + question.Length + 11];
        SetId(message, id);
        message[2] = 0x01; // RD
        message[5] = 1;    // QDCOUNT
        message[11] = 1;   // ARCOUNT: the OPT record
        question.CopyTo(message.AsSpan(HeaderLength));
        var opt = message.AsSpan(HeaderLength + question.Length);
        // root name, TYPE OPT (41), CLASS = UDP payload size, TTL 0, RDLEN 0 (RFC 6891 6.1.2)
        opt[0] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(opt[1..], 41);
        BinaryPrimitives.WriteUInt16BigEndian(opt[3..], EdnsUdpLimit);
        return message;
    }

    /// <summary>
    /// An answer to <paramref name="query"/> made here: its id, opcode, RD and question, RA set, no records, and
    /// <paramref name="rcode"/>; with <paramref name="truncated"/> the TC bit, which sends the client to TCP.
    /// </summary>
    public static byte[] Response(ReadOnlySpan<byte> query, int questionLength, byte rcode, bool truncated = false)
    {
        var message = new byte[HeaderLength + questionLength];
        query[..2].CopyTo(message);
        // QR, the query's opcode and RD; AA=0; TC as asked. RA; Z, AD, CD = 0.
        message[2] = (byte)(0x80 | (query[2] & 0x79) | (truncated ? 0x02 : 0));
        message[3] = (byte)(0x80 | (rcode & 0x0f));
        message[5] = (byte)(questionLength > 0 ? 1 : 0);
        query.Slice(HeaderLength, questionLength).CopyTo(message.AsSpan(HeaderLength));
        return message;
    }
}
