using System.Buffers;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Paddock.Interpreter.Http;

/// <summary>
/// The lines of an /execute response body: one JSON object and a newline each (NDJSON), as E2B's server writes
/// them and @e2b/code-interpreter's parseOutput reads them (by "type"; unknown types, such as keepalive, are ignored).
/// </summary>
internal static class OutputLines
{
    /// <summary>Written every <see cref="Http.ExecuteEndpoint.KeepaliveInterval"/> of silence, so a gone client is noticed.</summary>
    public static byte[] Keepalive { get; } = "{\"type\":\"keepalive\"}\n"u8.ToArray();

    /// <summary>The last line of every response.</summary>
    public static byte[] End { get; } = "{\"type\":\"end_of_execution\"}\n"u8.ToArray();

    /// <summary>
    /// Jupyter mime types to E2B's result fields (template/server/api/models/result.py); any other mime type goes
    /// into "extra" under its own name.
    /// </summary>
    private static readonly (string Mime, string Field)[] Fields =
    [
        ("text/plain", "text"),
        ("text/html", "html"),
        ("text/markdown", "markdown"),
        ("image/svg+xml", "svg"),
        ("image/png", "png"),
        ("image/jpeg", "jpeg"),
        ("application/pdf", "pdf"),
        ("text/latex", "latex"),
        ("application/json", "json"),
        ("application/javascript", "javascript"),
        ("e2b/data", "data"),
        ("e2b/chart", "chart"),
    ];

    public static byte[] Stream(string name, string text, string? timestamp) => Line(w =>
    {
        w.WriteString("type", name);
        w.WriteString("text", text);
        if (timestamp is not null)
        {
            w.WriteString("timestamp", timestamp);
        }
    });

    /// <summary>
    /// A stream line whose text is the kernel's own JSON string (a stream message's "text"), copied as it is: its
    /// bytes are already valid JSON (the message was parsed) with no raw newline, so the line stays one line. A 10 MB
    /// print measured 2026-12-07 on gVisor grew paddock-interp by ~78 MiB through the string path (a 20 MB UTF-16
    /// string, a writer buffer of three bytes a char, then the line) in a 512 MiB sandbox that its kernels already
    /// held at ~465 MiB: the host's OOM killer ended the sandbox. Copied, the cell needs the frame and the line
    /// (paddock-interp's RSS grew by ~40 MiB for that print).
    /// </summary>
    public static byte[] Stream(string name, JsonElement text, string? timestamp)
    {
        if (text.ValueKind != JsonValueKind.String)
        {
            return Stream(name, text.ValueKind == JsonValueKind.Null ? "" : text.GetRawText(), timestamp);
        }
        // Sized for the line: a big one is written without the buffer doubling on the way.
        var capacity = JsonMarshal.GetRawUtf8Value(text).Length + 128 + (timestamp?.Length ?? 0) * 6;
        return Line(w =>
        {
            w.WriteString("type", name);
            w.WritePropertyName("text");
            w.WriteRawValue(JsonMarshal.GetRawUtf8Value(text), skipInputValidation: true);
            if (timestamp is not null)
            {
                w.WriteString("timestamp", timestamp);
            }
        }, capacity);
    }

    public static byte[] ExecutionCount(int count) => Line(w =>
    {
        w.WriteString("type", "number_of_executions");
        w.WriteNumber("execution_count", count);
    });

    public static byte[] Error(string name, string value, string traceback) => Line(w =>
    {
        w.WriteString("type", "error");
        w.WriteString("name", name);
        w.WriteString("value", value);
        w.WriteString("traceback", traceback);
    });

    /// <summary>A display_data (<paramref name="isMainResult"/> false) or execute_result (true) mime bundle.</summary>
    public static byte[] Result(JsonElement data, bool isMainResult) => Line(w =>
    {
        w.WriteString("type", "result");
        var extra = new List<JsonProperty>();
        if (data.ValueKind == JsonValueKind.Object)
        {
            foreach (var property in data.EnumerateObject())
            {
                var field = Array.Find(Fields, f => f.Mime == property.Name).Field;
                if (field is null)
                {
                    extra.Add(property);
                }
                else if (field == "text" && property.Value.ValueKind == JsonValueKind.String)
                {
                    w.WriteString("text", StripQuotes(property.Value.GetString()!));
                }
                else
                {
                    w.WritePropertyName(field);
                    property.Value.WriteTo(w);
                }
            }
        }
        if (extra.Count > 0)
        {
            w.WriteStartObject("extra");
            foreach (var property in extra)
            {
                property.WriteTo(w);
            }
            w.WriteEndObject();
        }
        w.WriteBoolean("is_main_result", isMainResult);
    });

    /// <summary>
    /// E2B shows a string result without the quotes of its repr ('abc' → abc; result.py does the same), so
    /// <c>runCode("'x'")</c> has text x.
    /// </summary>
    internal static string StripQuotes(string text) =>
        text.Length >= 2 && ((text[0] == '\'' && text[^1] == '\'') || (text[0] == '"' && text[^1] == '"')) ? text[1..^1] : text;

    // The body is NDJSON for a program, never HTML: no need to escape <, >, & and non-ASCII (the default encoder
    // does, which made a DataFrame's html a third longer).
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static byte[] Line(Action<Utf8JsonWriter> body, int capacity = 256)
    {
        var buffer = new ArrayBufferWriter<byte>(capacity);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }
}
