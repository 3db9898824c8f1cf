using System.Buffers.Binary;
using System.Text;

namespace Paddock.Daemon.Networking;

/// <summary>What the first bytes of a connection say about the host it is for.</summary>
internal enum SniffResult
{
    /// <summary>Not enough bytes yet.</summary>
    NeedMore,

    /// <summary>The name is known.</summary>
    Found,

    /// <summary>A well-formed start without a name (no SNI extension, no Host header).</summary>
    NoName,

    /// <summary>Neither a TLS ClientHello nor an HTTP/1 request head, or one that is malformed or too big.</summary>
    Invalid,
}

/// <summary>
/// Reads the host name a client names in the first bytes it sends: the server_name extension of a TLS ClientHello
/// (RFC 8446 4.1.2, RFC 6066 3) or the Host header of an HTTP/1 request (RFC 9112 3.2). Only reads; the bytes are
/// forwarded unchanged.
/// </summary>
internal static class HostNameSniffer
{
    /// <summary>The most the proxy reads before it decides: one TLS record (2^14 + 5) or a request head of 16 KiB.</summary>
    public const int MaxBytes = 16384 + 5;

    public static SniffResult Sniff(ReadOnlySpan<byte> data, out string? host)
    {
        host = null;
        if (data.Length == 0)
        {
            return SniffResult.NeedMore;
        }
        return data[0] == 0x16 ? SniffTls(data, out host) : SniffHttp(data, out host);
    }

    private static SniffResult SniffTls(ReadOnlySpan<byte> data, out string? host)
    {
        host = null;
        if (data.Length < 5)
        {
            return SniffResult.NeedMore;
        }
        // TLSPlaintext: type(1)=handshake, legacy_record_version(2), length(2). A ClientHello split over several
        // records is legal but no common client does it; it is refused rather than reassembled.
        int recordLength = BinaryPrimitives.ReadUInt16BigEndian(data[3..]);
        if (data[1] != 3 || recordLength is 0 or > 16384)
        {
            return SniffResult.Invalid;
        }
        if (data.Length < 5 + recordLength)
        {
            return SniffResult.NeedMore;
        }
        var r = new Reader(data.Slice(5, recordLength));
        // Handshake: msg_type(1)=client_hello, length(3)
        if (!r.U8(out var type) || type != 1 || !r.U24(out var bodyLength) || bodyLength > r.Remaining)
        {
            return SniffResult.Invalid;
        }
        // legacy_version(2), random(32), legacy_session_id<0..32>, cipher_suites<2..2^16-2>, legacy_compression_methods<1..2^8-1>
        if (!r.Skip(2 + 32) || !r.SkipVector8() || !r.SkipVector16() || !r.SkipVector8())
        {
            return SniffResult.Invalid;
        }
        if (r.Remaining == 0)
        {
            return SniffResult.NoName; // no extensions at all
        }
        if (!r.U16(out var extensionsLength) || extensionsLength > r.Remaining)
        {
            return SniffResult.Invalid;
        }
        var ext = new Reader(r.Take(extensionsLength));
        while (ext.Remaining > 0)
        {
            if (!ext.U16(out var extType) || !ext.U16(out var extLength) || extLength > ext.Remaining)
            {
                return SniffResult.Invalid;
            }
            var body = ext.Take(extLength);
            if (extType != 0)
            {
                continue;
            }
            // ServerNameList: length(2), then entries of name_type(1) and HostName<1..2^16-1>.
            var names = new Reader(body);
            if (!names.U16(out var listLength) || listLength != names.Remaining)
            {
                return SniffResult.Invalid;
            }
            while (names.Remaining > 0)
            {
                if (!names.U8(out var nameType) || !names.U16(out var nameLength) || nameLength == 0 || nameLength > names.Remaining)
                {
                    return SniffResult.Invalid;
                }
                var name = names.Take(nameLength);
                if (nameType == 0)
                {
                    host = Encoding.ASCII.GetString(name);
                    return SniffResult.Found;
                }
            }
            return SniffResult.NoName;
        }
        return SniffResult.NoName;
    }

    private static SniffResult SniffHttp(ReadOnlySpan<byte> data, out string? host)
    {
        host = null;
        var end = data.IndexOf("\r\n\r\n"u8);
        if (end < 0)
        {
            return data.Length >= MaxBytes ? SniffResult.Invalid : LooksLikeRequestLine(data) ? SniffResult.NeedMore : SniffResult.Invalid;
        }
        var head = Encoding.Latin1.GetString(data[..end]);
        var lines = head.Split("\r\n");
        if (!LooksLikeRequestLine(data) || !lines[0].EndsWith(" HTTP/1.1", StringComparison.Ordinal) && !lines[0].EndsWith(" HTTP/1.0", StringComparison.Ordinal))
        {
            return SniffResult.Invalid;
        }
        string? found = null;
        foreach (var line in lines.AsSpan(1))
        {
            var colon = line.IndexOf(':');
            if (colon <= 0 || !line.AsSpan(0, colon).Equals("host", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            if (found is not null)
            {
                return SniffResult.Invalid; // two Host headers: which one the server reads is not ours to guess (RFC 9112 3.2)
            }
            found = line[(colon + 1)..].Trim();
        }
        if (found is null)
        {
            return SniffResult.NoName;
        }
        host = StripPort(found);
        return host.Length == 0 ? SniffResult.Invalid : SniffResult.Found;
    }

    private static bool LooksLikeRequestLine(ReadOnlySpan<byte> data)
    {
        // A method token of upper-case letters and then a space, within the bytes we have.
        for (var i = 0; i < data.Length && i < 16; i++)
        {
            if (data[i] == ' ')
            {
                return i > 0;
            }
            if (data[i] is < (byte)'A' or > (byte)'Z')
            {
                return false;
            }
        }
        return data.Length < 16;
    }

    private static string StripPort(string host)
    {
        if (host.StartsWith('['))
        {
            return host; // an IPv6 literal: never a name on an allowlist
        }
        var colon = host.LastIndexOf(':');
        return colon >= 0 && host[(colon + 1)..].All(char.IsAsciiDigit) ? host[..colon] : host;
    }

    private ref struct Reader(ReadOnlySpan<byte> data)
    {
        private ReadOnlySpan<byte> _data = data;

        public readonly int Remaining => _data.Length;

        public bool U8(out int value)
        {
            value = _data.Length >= 1 ? _data[0] : 0;
            return Skip(1);
        }

        public bool U16(out int value)
        {
            value = _data.Length >= 2 ? BinaryPrimitives.ReadUInt16BigEndian(_data) : 0;
            return Skip(2);
        }

        public bool U24(out int value)
        {
            value = _data.Length >= 3 ? _data[0] << 16 | _data[1] << 8 | _data[2] : 0;
            return Skip(3);
        }

        public bool Skip(int count)
        {
            if (count > _data.Length)
            {
                return false;
            }
            _data = _data[count..];
            return true;
        }

        public bool SkipVector8() => U8(out var n) && Skip(n);

        public bool SkipVector16() => U16(out var n) && Skip(n);

        public ReadOnlySpan<byte> Take(int count)
        {
            var taken = _data[..count];
            _data = _data[count..];
            return taken;
        }
    }
}
