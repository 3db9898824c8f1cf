using System.Globalization;
using System.Text;

namespace Paddock.Daemon.Runtimes;

/// <summary>Asks an agent, over a stream a runtime opened to its port, whether it is ready (GET /health).</summary>
internal static class AgentProbe
{
    /// <summary>The agent's /health header saying when its listening sockets were bound (Unix milliseconds).</summary>
    public const string ListeningSinceHeader = "X-Paddock-Listening-Since";

    private const int MaxResponseBytes = 4096;

    private static readonly byte[] Request = Encoding.ASCII.GetBytes("GET /health HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n");

    /// <summary>
    /// True when the agent answers /health with a 2xx status (envd answers 204) and, when
    /// <paramref name="listeningAfter"/> is given, says its listening sockets were bound after that instant (Unix
    /// milliseconds): after a gVisor restore only sockets bound anew can be trusted (GvisorRuntime's restore signal).
    /// </summary>
    public static async Task<bool> IsHealthyAsync(Stream stream, CancellationToken cancellationToken, long? listeningAfter = null)
    {
        await stream.WriteAsync(Request, cancellationToken);
        await stream.FlushAsync(cancellationToken);
        // "HTTP/1.1 204 No Content\r\n...\r\n\r\n": the status line, and the headers when a bind time is asked for.
        var buffer = new byte[MaxResponseBytes];
        var got = 0;
        while (got < buffer.Length && (got < 12 || (listeningAfter is not null && HeadersEnd(buffer, got) < 0)))
        {
            var n = await stream.ReadAsync(buffer.AsMemory(got), cancellationToken);
            if (n == 0)
            {
                break;
            }
            got += n;
        }
        var text = Encoding.ASCII.GetString(buffer, 0, got);
        if (!(text.StartsWith("HTTP/1.", StringComparison.Ordinal) && text.Length >= 12 && text[9] == '2'))
        {
            return false;
        }
        return listeningAfter is not { } after || (ListeningSince(text) is { } since && since > after);
    }

    private static int HeadersEnd(byte[] buffer, int length) => buffer.AsSpan(0, length).IndexOf("\r\n\r\n"u8);

    private static long? ListeningSince(string response)
    {
        foreach (var line in response.Split("\r\n"))
        {
            if (line.StartsWith(ListeningSinceHeader + ":", StringComparison.OrdinalIgnoreCase)
                && long.TryParse(line.AsSpan(ListeningSinceHeader.Length + 1).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var since))
            {
                return since;
            }
        }
        return null;
    }
}
