namespace Paddock.Bench.Agent;

/// <summary>
/// Reads the output lengths of a data event straight off the protobuf wire, without materialising it. A
/// <c>StartResponse</c>/<c>ConnectResponse</c> is <c>{1: ProcessEvent {2: DataEvent {1|2|3: bytes}}}</c> (envd's
/// process.proto); parsing it with Google.Protobuf would copy every output byte into a fresh ByteString (a large
/// object per MiB event), which made the bench's client cost more CPU per byte than the agent it measures.
/// </summary>
internal static class DataEventWire
{
    private const int LengthDelimited = 2;

    /// <summary>
    /// True when <paramref name="message"/> is a response holding exactly one data event, with its stdout, stderr
    /// and pty byte counts; false for anything else (start, end, keepalive, unknown fields), which the caller parses
    /// in full.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> message, out long stdout, out long stderr, out long pty)
    {
        stdout = stderr = pty = 0;
        // Response: field 1 (event), length-delimited, and nothing else.
        if (!TryReadField(ref message, out var field, out var processEvent) || field != 1 || !message.IsEmpty)
        {
            return false;
        }
        // ProcessEvent: field 2 (data), and nothing else.
        if (!TryReadField(ref processEvent, out field, out var dataEvent) || field != 2 || !processEvent.IsEmpty)
        {
            return false;
        }
        // DataEvent: a oneof, but a parser must accept repeats (the last wins); count them all, as a reader would see each.
        while (!dataEvent.IsEmpty)
        {
            if (!TryReadField(ref dataEvent, out field, out var bytes))
            {
                return false;
            }
            switch (field)
            {
                case 1: stdout += bytes.Length; break;
                case 2: stderr += bytes.Length; break;
                case 3: pty += bytes.Length; break;
                default: return false;
            }
        }
        return true;
    }

    /// <summary>Reads one length-delimited field from the front of <paramref name="input"/>.</summary>
    private static bool TryReadField(ref ReadOnlySpan<byte> input, out int field, out ReadOnlySpan<byte> value)
    {
        value = default;
        field = 0;
        if (!TryReadVarint(ref input, out var tag) || (tag & 7) != LengthDelimited || !TryReadVarint(ref input, out var length) || length > (ulong)input.Length)
        {
            return false;
        }
        field = (int)(tag >> 3);
        value = input[..(int)length];
        input = input[(int)length..];
        return true;
    }

    private static bool TryReadVarint(ref ReadOnlySpan<byte> input, out ulong value)
    {
        value = 0;
        for (var i = 0; i < 10 && i < input.Length; i++)
        {
            value |= (ulong)(input[i] & 0x7F) << (7 * i);
            if (input[i] < 0x80)
            {
                input = input[(i + 1)..];
                return true;
            }
        }
        return false;
    }
}

/// <summary>
/// The JSON twin of <see cref="DataEventWire"/>: the output lengths of <c>{"event":{"data":{"stdout":"BASE64"}}}</c>
/// read with a Utf8JsonReader, without decoding the base64 (its length gives the byte count). Anything else, or any
/// escaped text, is left to the full parser.
/// </summary>
internal static class DataEventJson
{
    public static bool TryRead(ReadOnlySpan<byte> message, out long stdout, out long stderr, out long pty)
    {
        stdout = stderr = pty = 0;
        var reader = new System.Text.Json.Utf8JsonReader(message);
        if (!Expect(ref reader, System.Text.Json.JsonTokenType.StartObject) || !Property(ref reader, "event"u8)
            || !Expect(ref reader, System.Text.Json.JsonTokenType.StartObject) || !Property(ref reader, "data"u8)
            || !Expect(ref reader, System.Text.Json.JsonTokenType.StartObject))
        {
            return false;
        }
        while (reader.Read() && reader.TokenType == System.Text.Json.JsonTokenType.PropertyName)
        {
            ref var target = ref stdout;
            if (reader.ValueTextEquals("stderr"u8))
            {
                target = ref stderr;
            }
            else if (reader.ValueTextEquals("pty"u8))
            {
                target = ref pty;
            }
            else if (!reader.ValueTextEquals("stdout"u8))
            {
                return false;
            }
            if (!reader.Read() || reader.TokenType != System.Text.Json.JsonTokenType.String || reader.ValueIsEscaped || reader.ValueSpan.Length % 4 != 0)
            {
                return false;
            }
            var text = reader.ValueSpan;
            var padding = text.Length == 0 ? 0 : text[^1] != '=' ? 0 : text[^2] == '=' ? 2 : 1;
            target += (text.Length / 4 * 3) - padding;
        }
        // The data, event and message objects all end here, and nothing follows.
        return reader.TokenType == System.Text.Json.JsonTokenType.EndObject
            && Expect(ref reader, System.Text.Json.JsonTokenType.EndObject)
            && Expect(ref reader, System.Text.Json.JsonTokenType.EndObject)
            && !reader.Read();
    }

    private static bool Expect(ref System.Text.Json.Utf8JsonReader reader, System.Text.Json.JsonTokenType type) => reader.Read() && reader.TokenType == type;

    private static bool Property(ref System.Text.Json.Utf8JsonReader reader, ReadOnlySpan<byte> name) =>
        reader.Read() && reader.TokenType == System.Text.Json.JsonTokenType.PropertyName && reader.ValueTextEquals(name);
}
