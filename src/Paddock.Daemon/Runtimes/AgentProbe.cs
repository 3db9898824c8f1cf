using System.Text;

namespace Paddock.Daemon.Runtimes;

/// <summary>Asks an agent, over a stream a runtime opened to its port, whether it is ready (GET /health).</summary>
internal static class AgentProbe
{
    private static readonly byte[] Request = Encoding.ASCII.GetBytes("GET /health HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n");

    /// <summary>True when the agent answers /health with a 2xx status (envd answers 204).</summary>
    public static async Task<bool> IsHealthyAsync(Stream stream, CancellationToken cancellationToken)
    {
        await stream.WriteAsync(Request, cancellationToken);
        await stream.FlushAsync(cancellationToken);
        // "HTTP/1.1 204 No Content\r\n": the status line is all we need.
        var buffer = new byte[64];
        var got = 0;
        while (got < 12)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(got), cancellationToken);
            if (n == 0)
            {
                return false;
            }
            got += n;
        }
        var line = Encoding.ASCII.GetString(buffer, 0, got);
        return line.StartsWith("HTTP/1.", StringComparison.Ordinal) && line.Length >= 12 && line[9] == '2';
    }
}
