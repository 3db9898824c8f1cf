using System.Globalization;
using System.Text;
using System.Text.Json;
using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Pools;

/// <summary>
/// Gives a running agent its sandbox's settings with envd's <c>POST /init</c> (variables for every later process,
/// the access token): what turns a warm pool sandbox into the claimer's. One HTTP/1.1 request with
/// <c>Connection: close</c> over a stream from <see cref="ISandboxRuntime.ConnectAsync"/>: the same path the proxy
/// uses, with no HttpClient connection pool to keep per sandbox.
/// </summary>
internal static class AgentInit
{
    public static async Task SendAsync(ISandboxRuntime runtime, string sandboxId, string? currentToken,
        IReadOnlyDictionary<string, string> envVars, string? newToken, CancellationToken cancellationToken)
    {
        var body = Body(envVars, newToken);
        var head = new StringBuilder("POST /init HTTP/1.1\r\nHost: sandbox\r\nContent-Type: application/json\r\nConnection: close\r\n");
        if (currentToken is not null)
        {
            head.Append("X-Access-Token: ").Append(currentToken).Append("\r\n");
        }
        head.Append("Content-Length: ").Append(body.Length.ToString(CultureInfo.InvariantCulture)).Append("\r\n\r\n");
        var headBytes = Encoding.ASCII.GetBytes(head.ToString());
        var request = new byte[headBytes.Length + body.Length];
        headBytes.CopyTo(request, 0);
        body.CopyTo(request, headBytes.Length);

        await using var stream = await runtime.ConnectAsync(sandboxId, AgentBundle.AgentPort, cancellationToken);
        await stream.WriteAsync(request, cancellationToken);
        await stream.FlushAsync(cancellationToken);

        // Read the whole (short) answer: its status line decides, its body explains a refusal.
        var buffer = new byte[8192];
        var got = 0;
        while (got < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(got), cancellationToken);
            if (n == 0)
            {
                break;
            }
            got += n;
        }
        var answer = Encoding.UTF8.GetString(buffer, 0, got);
        if (!answer.StartsWith("HTTP/1.1 204", StringComparison.Ordinal) && !answer.StartsWith("HTTP/1.0 204", StringComparison.Ordinal))
        {
            var lineEnd = answer.IndexOf('\r', StringComparison.Ordinal);
            var bodyStart = answer.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            var status = lineEnd > 0 ? answer[..lineEnd] : "no answer";
            var detail = bodyStart > 0 ? answer[(bodyStart + 4)..].Trim() : "";
            throw new IOException($"the agent refused POST /init: {status} {detail}".TrimEnd());
        }
    }

    internal static byte[] Body(IReadOnlyDictionary<string, string> envVars, string? newToken)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartObject("envVars");
            foreach (var (name, value) in envVars)
            {
                json.WriteString(name, value);
            }
            json.WriteEndObject();
            // Always present: empty removes the pool's own token, so a sandbox created without `secure` needs none.
            json.WriteString("accessToken", newToken ?? "");
            json.WriteString("timestamp", DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture));
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }
}
