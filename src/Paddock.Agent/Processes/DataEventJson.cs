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
