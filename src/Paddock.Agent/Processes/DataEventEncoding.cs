using System.Buffers.Text;

namespace Paddock.Agent.Processes;

/// <summary>
/// A data event in the JSON codec, encoded straight into the response: <c>{"event":{"data":{"stdout":"BASE64"}}}</c>,
/// what protojson makes of a <c>StartResponse</c> or <c>ConnectResponse</c> (both carry the event as field 1,
/// <c>event</c>) holding output. E2B's SDKs stream in JSON, so this is the path most output takes; the generic
/// formatter built each event's base64 as a string (see <see cref="Connect.IStreamWriter{T}.WriteEncodedAsync"/>).
/// </summary>
internal static class DataEventJson
{
    private static ReadOnlySpan<byte> Suffix => "\"}}}"u8;

    /// <summary>The encoded size: the fixed text around the standard, padded base64 of the bytes.</summary>
    public static int Length(OutputChunk chunk) => Prefix(chunk.Kind).Length + Base64.GetMaxEncodedToUtf8Length(chunk.Length) + Suffix.Length;

    /// <summary>Writes the event into <paramref name="destination"/>, exactly <see cref="Length"/> bytes long.</summary>
    public static void Encode(Span<byte> destination, OutputChunk chunk)
    {
        var prefix = Prefix(chunk.Kind);
        prefix.CopyTo(destination);
        var status = Base64.EncodeToUtf8(chunk.Data.Span, destination[prefix.Length..], out _, out var written);
        if (status != System.Buffers.OperationStatus.Done)
        {
            throw new InvalidOperationException($"base64 encoding of process output stopped: {status}");
        }
        Suffix.CopyTo(destination[(prefix.Length + written)..]);
    }

    private static ReadOnlySpan<byte> Prefix(OutputKind kind) => kind switch
    {
        OutputKind.Stdout => "{\"event\":{\"data\":{\"stdout\":\""u8,
        OutputKind.Stderr => "{\"event\":{\"data\":{\"stderr\":\""u8,
        _ => "{\"event\":{\"data\":{\"pty\":\""u8,
    };
}

/// <summary>
/// A data event in the protobuf codec, encoded straight into the response in one piece:
/// <c>StartResponse/ConnectResponse { event (1) = ProcessEvent { data (2) = DataEvent { stdout (1) | stderr (2) | pty (3) = bytes } } }</c>.
/// Google.Protobuf's WriteTo(IBufferWriter) asks the response for one small span after another, and Kestrel makes
/// each of them a chunk of the chunked body; measured with bench/ on an idle machine, the JSON events (written in
/// one piece) streamed faster than these despite being a third larger.
/// </summary>
internal static class DataEventProto
{
    private const int LengthDelimited = 2;

    /// <summary>The encoded size of the response message holding the chunk.</summary>
    public static int Length(OutputChunk chunk)
    {
        var data = FieldLength(chunk.Length);
        var processEvent = FieldLength(data);
        return FieldLength(processEvent);
    }

    /// <summary>Writes the message into <paramref name="destination"/>, exactly <see cref="Length"/> bytes long.</summary>
    public static void Encode(Span<byte> destination, OutputChunk chunk)
    {
        var data = FieldLength(chunk.Length);
        var processEvent = FieldLength(data);
        var at = WriteHeader(destination, 1, processEvent);          // StartResponse.event / ConnectResponse.event
        at += WriteHeader(destination[at..], 2, data);               // ProcessEvent.data
        at += WriteHeader(destination[at..], chunk.Kind switch       // DataEvent.stdout / stderr / pty
        {
            OutputKind.Stdout => 1,
            OutputKind.Stderr => 2,
            _ => 3,
        }, chunk.Length);
        chunk.Data.Span.CopyTo(destination[at..]);
    }

    /// <summary>Size of a length-delimited field (one-byte tag, varint length, content) with content of <paramref name="length"/> bytes.</summary>
    private static int FieldLength(int length) => 1 + VarintLength((uint)length) + length;

    private static int WriteHeader(Span<byte> destination, int field, int length)
    {
        destination[0] = (byte)((field << 3) | LengthDelimited);
        var at = 1;
        var value = (uint)length;
        while (value >= 0x80)
        {
            destination[at++] = (byte)(value | 0x80);
            value >>= 7;
        }
        destination[at++] = (byte)value;
        return at;
    }

    private static int VarintLength(uint value) => value < 1u << 7 ? 1 : value < 1u << 14 ? 2 : value < 1u << 21 ? 3 : value < 1u << 28 ? 4 : 5;
}
