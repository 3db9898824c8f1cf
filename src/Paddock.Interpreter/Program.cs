using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;
using Paddock.Interpreter;
using Paddock.Interpreter.Contexts;
using Paddock.Interpreter.Http;

// paddock-interp serve [--port N]      the server (the code-interpreter template's start command)
// paddock-interp wait-ready [--port N] [--timeout-s S]   exits 0 once /health answers 200 (its ready check)
const int DefaultPort = 49999;
var mode = args.Length > 0 ? args[0] : "";
var port = DefaultPort;
var timeoutSeconds = 120;
for (var i = 1; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--port" when i + 1 < args.Length && int.TryParse(args[i + 1], out var p) && p is > 0 and < 65536:
            port = p;
            i++;
            break;
        case "--timeout-s" when i + 1 < args.Length && int.TryParse(args[i + 1], out var t) && t > 0:
            timeoutSeconds = t;
            i++;
            break;
        default:
            Console.Error.WriteLine($"paddock-interp: unknown or incomplete option '{args[i]}'");
            return 2;
    }
}

switch (mode)
{
    case "serve":
        return await ServeAsync(port);
    case "wait-ready":
        return await WaitReadyAsync(port, TimeSpan.FromSeconds(timeoutSeconds));
    default:
        Console.Error.WriteLine("usage: paddock-interp serve [--port N] | wait-ready [--port N] [--timeout-s S]");
        return 2;
}

static async Task<int> ServeAsync(int port)
{
    var builder = WebApplication.CreateSlimBuilder();
    builder.Logging.ClearProviders();
    builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
    builder.Logging.SetMinimumLevel(LogLevel.Information);
    builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
    builder.WebHost.ConfigureKestrel(k =>
    {
        k.ListenAnyIP(port);
        k.Limits.MaxRequestBodySize = null; // the routes read bodies themselves, with their own cap
    });
    await using var app = builder.Build();
    var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("paddock-interp");

    var home = Environment.GetEnvironmentVariable("HOME");
    var cwd = home is { Length: > 0 } && Directory.Exists(home) ? home : Environment.CurrentDirectory;
    var runtime = Path.Combine(Path.GetTempPath(), $"paddock-interp-{Environment.UserName}-{Environment.ProcessId}");
    Directory.CreateDirectory(runtime, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    await using var contexts = new ContextRegistry(AppContext.BaseDirectory, runtime, cwd, logger);
    var readiness = new ServerReadiness();
    InterpreterEndpoints.Map(app, contexts, readiness);

    await app.StartAsync();
    // E2B's server starts its default contexts with itself; the template's ready check waits for the python one, so
    // a create returns with the first cell's kernel already up.
    try
    {
        await contexts.DefaultAsync("python", app.Lifetime.ApplicationStopping);
        readiness.IsReady = true;
    }
    catch (Exception ex) when (ex is IOException or OperationCanceledException)
    {
        InterpreterLog.DefaultContextFailed(logger, ex);
        readiness.Error = ex.Message;
    }
    await app.WaitForShutdownAsync();
    try
    {
        Directory.Delete(runtime, recursive: true);
    }
    catch (IOException)
    {
        // Temporary files; the sandbox's /tmp goes with it.
    }
    return 0;
}

// The ready check: one GET /health per 10 ms over a raw socket (no HTTP client to start in every check).
static async Task<int> WaitReadyAsync(int port, TimeSpan timeout)
{
    var deadline = DateTime.UtcNow + timeout;
    var request = Encoding.ASCII.GetBytes("GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    var last = "no answer";
    // Bounded by the deadline.
    while (DateTime.UtcNow < deadline)
    {
        try
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(System.Net.IPAddress.Loopback, port);
            await socket.SendAsync(request);
            var buffer = new byte[4096];
            var total = 0;
            int n;
            while (total < buffer.Length && (n = await socket.ReceiveAsync(buffer.AsMemory(total))) > 0)
            {
                total += n;
            }
            var answer = Encoding.UTF8.GetString(buffer, 0, total);
            if (answer.StartsWith("HTTP/1.1 200", StringComparison.Ordinal))
            {
                return 0;
            }
            var body = answer.IndexOf("\r\n\r\n", StringComparison.Ordinal) is var at and >= 0 ? answer[(at + 4)..] : answer;
            if (answer.StartsWith("HTTP/1.1 500", StringComparison.Ordinal))
            {
                Console.Error.WriteLine($"paddock-interp: {body}");
                return 1;
            }
            last = body;
        }
        catch (SocketException ex)
        {
            last = ex.Message;
        }
        await Task.Delay(10);
    }
    Console.Error.WriteLine($"paddock-interp: not ready within {timeout.TotalSeconds:0} s: {last}");
    return 1;
}
