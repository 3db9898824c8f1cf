using System.Buffers.Binary;

namespace Paddock.Envd.Connect;

/// <summary>
/// The 5-byte prefix of every message in a Connect streaming body: one flags byte, then the payload length
/// as a big-endian uint32 (connectrpc.com/docs/protocol, "Streaming-Request" / "Streaming-Response").
/// </summary>
public static class Envelope
{
    /// <summary>Length of the prefix.</summary>
    public const int HeaderSize = 5;

    /// <summary>Flag bit: the payload is compressed with the stream's negotiated encoding.</summary>
    public const byte CompressedFlag = 0x01;

    /// <summary>Flag bit: the payload is the end-of-stream JSON message, not an RPC message.</summary>
    public const byte EndStreamFlag = 0x02;

    /// <summary>Writes a prefix for a payload of <paramref name="length"/> bytes.</summary>
    public static void WriteHeader(Span<byte> destination, byte flags, int length)
    {
        destination[0] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(destination[1..], checked((uint)length));
    }

    /// <summary>Reads a prefix: flags and the payload length that follows it.</summary>
    public static (byte Flags, uint Length) ReadHeader(ReadOnlySpan<byte> source) =>
        (source[0], BinaryPrimitives.ReadUInt32BigEndian(source[1..]));
}
