using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Paddock.Interpreter.Jupyter;

/// <summary>
/// One Jupyter message as it travels over ZeroMQ (messaging spec 5.3, "The Wire Protocol"): routing identities, the
/// delimiter <c>&lt;IDS|MSG&gt;</c>, the HMAC signature, then header, parent header, metadata and content as JSON
/// frames, then optional binary buffers.
/// </summary>
internal sealed class JupyterMessage
{
    public const string ProtocolVersion = "5.3";

    private static readonly byte[] Delimiter = "<IDS|MSG>"u8.ToArray();

    private JupyterMessage(string msgId, string msgType, string? parentMsgId, string? date, JsonDocument content)
    {
        MsgId = msgId;
        MsgType = msgType;
        ParentMsgId = parentMsgId;
        Date = date;
        Content = content;
    }

    public string MsgId { get; }

    public string MsgType { get; }

    /// <summary>The msg_id of the request this message answers (parent_header.msg_id); null when it has none.</summary>
    public string? ParentMsgId { get; }

    /// <summary>header.date as the kernel wrote it (ISO 8601); E2B passes it on as an output's timestamp.</summary>
    public string? Date { get; }

    public JsonDocument Content { get; }

    /// <summary>
    /// The frames of a request from this client: delimiter, signature, header, parent header (empty), metadata
    /// (empty), content. A DEALER socket adds no identity frame of its own to what it sends.
    /// </summary>
    public static IReadOnlyList<byte[]> Build(MessageSigner signer, string session, string msgId, string msgType, byte[] content, DateTimeOffset now)
    {
        var header = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            w.WriteString("msg_id", msgId);
            w.WriteString("msg_type", msgType);
            w.WriteString("session", session);
            w.WriteString("username", "paddock");
            w.WriteString("date", now.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("version", ProtocolVersion);
            w.WriteEndObject();
        }
        var headerBytes = header.WrittenSpan.ToArray();
        byte[] empty = "{}"u8.ToArray();
        var signature = signer.Sign(headerBytes, empty, empty, content);
        return [Delimiter, signature, headerBytes, empty, empty, content];
    }

    /// <summary>
    /// Parses the frames of one received message and checks its signature. Returns null with <paramref name="error"/>
    /// for frames that are not a Jupyter message or whose signature does not match (the kernel shares the key, so
    /// a mismatch means a message that did not come from it).
    /// </summary>
    public static JupyterMessage? Parse(MessageSigner signer, IReadOnlyList<byte[]> frames, out string? error)
    {
        var start = -1;
        for (var i = 0; i < frames.Count; i++)
        {
            if (frames[i].AsSpan().SequenceEqual(Delimiter))
            {
                start = i;
                break;
            }
        }
        if (start < 0 || frames.Count < start + 6)
        {
            error = $"not a Jupyter message: {frames.Count} frames{(start < 0 ? " and no <IDS|MSG> delimiter" : " after the delimiter are too few")}";
            return null;
        }
        var (signature, header, parent, metadata, content) = (frames[start + 1], frames[start + 2], frames[start + 3], frames[start + 4], frames[start + 5]);
        if (!signer.Verify(signature, header, parent, metadata, content))
        {
            error = "the message's HMAC signature does not match";
            return null;
        }
        try
        {
            using var headerDoc = JsonDocument.Parse(header);
            using var parentDoc = JsonDocument.Parse(parent);
            var msgId = headerDoc.RootElement.GetProperty("msg_id").GetString() ?? "";
            var msgType = headerDoc.RootElement.GetProperty("msg_type").GetString() ?? "";
            var date = headerDoc.RootElement.TryGetProperty("date", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null;
            var parentId = parentDoc.RootElement.ValueKind == JsonValueKind.Object && parentDoc.RootElement.TryGetProperty("msg_id", out var p) && p.ValueKind == JsonValueKind.String
                ? p.GetString()
                : null;
            error = null;
            return new JupyterMessage(msgId, msgType, parentId, date, JsonDocument.Parse(content));
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            error = $"a Jupyter message with a malformed header or content: {ex.Message}";
            return null;
        }
    }

    public override string ToString() => $"{MsgType} {MsgId} (parent {ParentMsgId ?? "none"})";

    /// <summary>UTF-8 JSON of an execute_request's content (messaging spec, "Execute").</summary>
    public static byte[] ExecuteRequestContent(string code, bool silent)
    {
        var buffer = new ArrayBufferWriter<byte>(code.Length + 160);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("code", code);
            w.WriteBoolean("silent", silent);
            w.WriteBoolean("store_history", !silent);
            w.WriteStartObject("user_expressions");
            w.WriteEndObject();
            w.WriteBoolean("allow_stdin", false);
            w.WriteBoolean("stop_on_error", true);
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    public static string NewId() => Guid.NewGuid().ToString("N");

    internal static string Text(byte[] frame) => Encoding.UTF8.GetString(frame);
}
