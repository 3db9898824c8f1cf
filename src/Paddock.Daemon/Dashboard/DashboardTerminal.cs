using System.Buffers;
using System.Net.WebSockets;
using System.Text.Json;
using Paddock.Client;
using Paddock.Daemon.Api;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Mcp;

namespace Paddock.Daemon.Dashboard;

/// <summary>
/// The dashboard's terminal: a WebSocket bridged to a PTY in the sandbox (a login shell, as <c>paddock shell</c> opens).
/// Binary frames carry the terminal's bytes both ways (Ctrl-C is the byte 0x03, which the PTY turns into SIGINT);
/// text frames carry JSON control messages: from the page <c>{"type":"resize","cols":C,"rows":R}</c>, from the daemon
/// <c>{"type":"exit","exitCode":N}</c> when the shell ends. Closing the socket kills the shell.
/// </summary>
/// <remarks>
/// A WebSocket handshake is a GET, so <see cref="ApiKeyMiddleware"/> does not ask it for the CSRF header: the check is
/// here instead. Browsers send the page's Origin on every handshake, and a page of another origin must not drive a
/// terminal with the user's cookie (SameSite=Strict already keeps the cookie off a cross-site handshake; this also
/// covers another origin of the same site), so the Origin must be this daemon's, and the query must carry the
/// session's CSRF token.
/// </remarks>
internal static class DashboardTerminal
{
    private const int MaxControlBytes = 4096;

    public static async Task RunAsync(string sandboxID, HttpContext http, LoopbackAddress self, DashboardSessions sessions, ILogger<DashboardSessions> logger)
    {
        if (!http.WebSockets.IsWebSocketRequest)
        {
            throw ApiRequestException.BadRequest("the terminal is a WebSocket: open it with a WebSocket handshake");
        }
        if (http.Request.Headers[ApiKeyAuthenticator.HeaderName].Count == 0)
        {
            var origin = http.Request.Headers.Origin.ToString();
            var expected = $"{http.Request.Scheme}://{http.Request.Host}";
            if (!string.Equals(origin, expected, StringComparison.OrdinalIgnoreCase))
            {
                throw new ApiRequestException(StatusCodes.Status403Forbidden, $"the terminal opens only from this daemon's own pages (Origin '{origin}', expected '{expected}')");
            }
            var session = sessions.Find(http.Request.Cookies[DashboardSessions.CookieName]);
            if (session is null || !DashboardSessions.CsrfMatches(session, http.Request.Query["csrf"]))
            {
                throw new ApiRequestException(StatusCodes.Status403Forbidden, "missing or wrong csrf query parameter for the terminal");
            }
        }
        var cols = Size(http.Request.Query["cols"], 80, "cols");
        var rows = Size(http.Request.Query["rows"], 24, "rows");
        await using var sandbox = await DashboardEndpoints.ConnectAsync(http, sandboxID, self, sessions);
        // No server-side end: the shell lives as long as the page holds the socket.
        var pty = await sandbox.Pty.CreateAsync(new PtyOptions { Cols = cols, Rows = rows, Timeout = TimeSpan.Zero }, http.RequestAborted);
        await using var _ = pty;
        using var socket = await http.WebSockets.AcceptWebSocketAsync();
        DashboardLog.TerminalOpened(logger, sandboxID, pty.Pid);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
        var output = PumpOutputAsync(pty, socket, stop.Token);
        var how = "the page closed it";
        try
        {
            await PumpInputAsync(pty, socket, stop.Token);
        }
        catch (WebSocketException)
        {
            how = "the connection broke";
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            how = "the shell ended";
        }
        finally
        {
            if (!output.IsCompleted)
            {
                // The page left first: end the shell, so no terminal outlives its page.
                try
                {
                    await pty.KillAsync(CancellationToken.None);
                }
                catch (SandboxException)
                {
                    // The sandbox (and the shell with it) is already gone.
                }
            }
            try
            {
                // The output pump reads on to the shell's end, so that the end passes the proxy and is in the audit
                // trail with its status; bounded, as a sandbox that stops answering must not hold this request.
                await output.WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception ex) when (ex is TimeoutException or OperationCanceledException or WebSocketException or SandboxException)
            {
                how += $" ({ex.Message})";
            }
            await stop.CancelAsync();
        }
        DashboardLog.TerminalClosed(logger, sandboxID, pty.Pid, how);
    }

    private static async Task PumpInputAsync(PtyHandle pty, WebSocket socket, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            while (socket.State == WebSocketState.Open)
            {
                var message = await ReadMessageAsync(socket, buffer, cancellationToken);
                if (message.Type == WebSocketMessageType.Close)
                {
                    return;
                }
                if (message.Type == WebSocketMessageType.Binary)
                {
                    await pty.SendInputAsync(message.Bytes, cancellationToken);
                    continue;
                }
                TerminalControl? control;
                try
                {
                    control = JsonSerializer.Deserialize(message.Bytes.Span, DashboardJsonContext.Default.TerminalControl);
                }
                catch (JsonException)
                {
                    control = null;
                }
                if (control is { Type: "resize", Cols: > 0 and <= 1000, Rows: > 0 and <= 1000 })
                {
                    await pty.ResizeAsync(control.Cols, control.Rows, cancellationToken);
                }
                else
                {
                    await socket.CloseAsync(WebSocketCloseStatus.InvalidPayloadData, "unknown control message", cancellationToken);
                    return;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>One whole message (binary input is sent as it comes; a text control message must fit <see cref="MaxControlBytes"/>).</summary>
    private static async Task<(WebSocketMessageType Type, ReadOnlyMemory<byte> Bytes)> ReadMessageAsync(WebSocket socket, byte[] buffer, CancellationToken cancellationToken)
    {
        var result = await socket.ReceiveAsync(new ArraySegment<byte>(buffer), cancellationToken);
        if (result.MessageType != WebSocketMessageType.Text || result.EndOfMessage)
        {
            return (result.MessageType, buffer.AsMemory(0, result.Count));
        }
        var length = result.Count;
        while (!result.EndOfMessage)
        {
            if (length >= MaxControlBytes)
            {
                throw new WebSocketException(WebSocketError.InvalidMessageType, "a control message longer than 4 KiB");
            }
            result = await socket.ReceiveAsync(new ArraySegment<byte>(buffer, length, buffer.Length - length), cancellationToken);
            length += result.Count;
        }
        return (result.MessageType, buffer.AsMemory(0, length));
    }

    private static async Task PumpOutputAsync(PtyHandle pty, WebSocket socket, CancellationToken cancellationToken)
    {
        await foreach (var chunk in pty.ReadOutputAsync(cancellationToken))
        {
            // Once the page is gone the output is dropped, but read on to the end (see RunAsync).
            if (socket.State == WebSocketState.Open)
            {
                try
                {
                    await socket.SendAsync(chunk, WebSocketMessageType.Binary, endOfMessage: true, cancellationToken);
                }
                catch (WebSocketException)
                {
                    // The page went away mid-send; RunAsync kills the shell.
                }
            }
        }
        var result = await pty.WaitAsync(cancellationToken);
        if (socket.State != WebSocketState.Open)
        {
            return;
        }
        var exit = JsonSerializer.SerializeToUtf8Bytes(new TerminalExit("exit", result.ExitCode, null), DashboardJsonContext.Default.TerminalExit);
        await socket.SendAsync(exit, WebSocketMessageType.Text, endOfMessage: true, cancellationToken);
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "the shell ended", cancellationToken);
    }

    private static int Size(string? text, int fallback, string name) =>
        string.IsNullOrEmpty(text) ? fallback
        : int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) && n is > 0 and <= 1000 ? n
        : throw ApiRequestException.BadRequest($"invalid {name} '{text}': expected 1 to 1000");
}
