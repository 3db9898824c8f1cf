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
        // A body's length and SHA-256, read in whatever pieces the proxy sends it.
        app.MapPost("/digest", async (HttpContext http) =>
        {
            using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
            var buffer = new byte[16 * 1024];
            long length = 0;
            int n;
            while ((n = await http.Request.Body.ReadAsync(buffer, http.RequestAborted)) > 0)
            {
                sha.AppendData(buffer, 0, n);
                length += n;
            }
            return $"{length} {Convert.ToHexString(sha.GetHashAndReset())}";
        });
        // Bytes(n, seed) in writes of varying size, chunked or with a Content-Length (?length=1).
        app.MapGet("/bytes", async (HttpContext http, int n, int seed, int? length) =>
        {
            var body = Bytes(n, seed);
            if (length == 1)
            {
                http.Response.ContentLength = n;
            }
            var random = new Random(seed);
            for (var at = 0; at < n;)
            {
                var size = Math.Min(n - at, random.Next(1, 200_000));
                await http.Response.Body.WriteAsync(body.AsMemory(at, size), http.RequestAborted);
                at += size;
            }
        });
        // Promises 1 MiB, sends half, then drops the connection.
        app.MapGet("/cut", async (HttpContext http) =>
        {
            http.Response.ContentLength = 1 << 20;
            await http.Response.Body.WriteAsync(new byte[1 << 19], http.RequestAborted);
            await http.Response.Body.FlushAsync(http.RequestAborted);
            http.Abort();
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

    /// <summary>The bytes /bytes sends.</summary>
    public static byte[] Bytes(int n, int seed)
    {
        var bytes = new byte[n];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }
}
