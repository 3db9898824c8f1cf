using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Paddock.Daemon.Tests.Proxy;

/// <summary>
/// An HTTP server standing in for a process listening inside a sandbox (the local runtime double maps a sandbox port
/// to it): echoes the Host it was reached by, streams on demand, and echoes WebSocket messages.
/// </summary>
internal sealed class SandboxAppServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private SandboxAppServer(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    /// <summary>Completing it lets /stream send its second chunk.</summary>
    public TaskCompletionSource SecondChunk { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public static async Task<SandboxAppServer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        SandboxAppServer? self = null;
        app.UseWebSockets();
        app.MapGet("/", (HttpContext http) => $"hello from inside, host={http.Request.Host}, token={http.Request.Headers["X-Access-Token"]}");
        app.MapGet("/stream", async (HttpContext http) =>
        {
            http.Response.ContentType = "text/plain";
            await http.Response.WriteAsync("first\n", http.RequestAborted);
            await http.Response.Body.FlushAsync(http.RequestAborted);
            await self!.SecondChunk.Task.WaitAsync(TimeSpan.FromSeconds(30), http.RequestAborted);
            await http.Response.WriteAsync("second\n", http.RequestAborted);
        });
        app.Map("/ws", async (HttpContext http) =>
        {
            if (!http.WebSockets.IsWebSocketRequest)
            {
                http.Response.StatusCode = StatusCodes.Status400BadRequest;
                return;
            }
            using var socket = await http.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[4096];
            while (true)
            {
                var received = await socket.ReceiveAsync(buffer, http.RequestAborted);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", http.RequestAborted);
                    return;
                }
                await socket.SendAsync(buffer.AsMemory(0, received.Count), received.MessageType, received.EndOfMessage, http.RequestAborted);
            }
        });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await app.StartAsync(timeout.Token);
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        self = new SandboxAppServer(app, address.Port);
        return self;
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }
}
