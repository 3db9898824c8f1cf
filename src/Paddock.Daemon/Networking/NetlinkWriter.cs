using System.Buffers.Binary;
using System.Text;

namespace Paddock.Daemon.Networking;

/// <summary>
/// Writes netlink messages (netlink(7): a 16-byte header, a fixed part, then 4-byte aligned attributes, nested or
/// not) one after another into a buffer that grows, so that a batch of several messages goes out as one datagram.
/// </summary>
internal sealed class NetlinkWriter
{
    private byte[] _buffer = new byte[1024];
    private int _length;
    private int _message = -1;

    /// <summary>Everything written so far, each message's length set.</summary>
    public ReadOnlySpan<byte> Written
    {
        get
        {
            EndMessage();
            return _buffer.AsSpan(0, _length);
        }
    }

    /// <summary>Starts a message (ending the one before); nlmsg_pid stays 0, for the kernel to fill in.</summary>
    public void Message(ushort type, ushort flags, uint sequence)
    {
        EndMessage();
        _message = _length;
        var s = Reserve(16);
        BinaryPrimitives.WriteUInt16LittleEndian(s[4..], type);
        BinaryPrimitives.WriteUInt16LittleEndian(s[6..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(s[8..], sequence);
    }

    /// <summary>The message's fixed part (ifinfomsg, nfgenmsg, ...), zeroed, for the caller to fill in.</summary>
    public Span<byte> Fixed(int size) => Reserve(size);

    public void String(ushort type, string value, bool terminate = true)
    {
        var count = Encoding.ASCII.GetByteCount(value);
        var s = Attribute(type, count + (terminate ? 1 : 0));
        Encoding.ASCII.GetBytes(value, s);
    }

    /// <summary>A 32-bit attribute in host order (rtnetlink's convention).</summary>
    public void UInt32(ushort type, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(Attribute(type, 4), value);

    /// <summary>A 32-bit attribute in network order (nf_tables' convention).</summary>
    public void UInt32BigEndian(ushort type, uint value) => BinaryPrimitives.WriteUInt32BigEndian(Attribute(type, 4), value);

    public void UInt16BigEndian(ushort type, ushort value) => BinaryPrimitives.WriteUInt16BigEndian(Attribute(type, 2), value);

    public void UInt64BigEndian(ushort type, ulong value) => BinaryPrimitives.WriteUInt64BigEndian(Attribute(type, 8), value);

    public void Bytes(ushort type, ReadOnlySpan<byte> value) => value.CopyTo(Attribute(type, value.Length));

    /// <summary>Starts a nested attribute; <see cref="End"/> with the returned offset sets its length.</summary>
    public int Begin(ushort type)
    {
        var start = _length;
        Attribute(type, 0);
        return start;
    }

    /// <summary>A nested attribute marked NLA_F_NESTED (libmnl marks them so; nf_tables reads them either way).</summary>
    public int Nest(ushort type) => Begin((ushort)(type | 0x8000));

    public void End(int start) => BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(start), (ushort)(_length - start));

    private void EndMessage()
    {
        if (_message >= 0)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(_message), (uint)(_length - _message));
        }
    }

    private Span<byte> Attribute(ushort type, int payload)
    {
        var s = Reserve(4 + payload);
        BinaryPrimitives.WriteUInt16LittleEndian(s, (ushort)(4 + payload));
        BinaryPrimitives.WriteUInt16LittleEndian(s[2..], type);
        return s.Slice(4, payload);
    }

    private Span<byte> Reserve(int count)
    {
        var start = _length;
        var end = (start + count + 3) & ~3;
        if (end > _buffer.Length)
        {
            // Zeroed by the allocation: padding and fixed parts start as zeros.
            Array.Resize(ref _buffer, Math.Max(end, _buffer.Length * 2));
        }
        _length = end;
        return _buffer.AsSpan(start, count);
    }
}
