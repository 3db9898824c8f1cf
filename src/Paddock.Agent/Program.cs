using Paddock.Agent;
using Paddock.Agent.Auth;
using Paddock.Agent.Connect;
using Paddock.Agent.Files;
using Paddock.Agent.Filesystem;
using Paddock.Agent.Hosting;
using Paddock.Agent.Init;
using Paddock.Agent.Processes;
using Paddock.Agent.Users;
using Paddock.Shared.Kestrel;

AgentOptions options;
try
{
    options = AgentOptions.Parse(args);
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine($"paddock-agent: {ex.Message}");
    Console.Error.WriteLine(AgentOptions.Usage);
    return 2;
}

// No generic host (WebApplication): Kestrel serves AgentRoutes directly, and the agent's objects are made here. The
// host's dependency injection was most of the agent's start-up CPU (issue 6; see AgentRoutes). Logging at Warning.
var loggers = new AgentLoggerFactory(LogLevel.Warning, Console.Out);
var server = new AgentServer(loggers);
H2cHandoff.RemoveStale(Path.GetTempPath());
var h2cSocket = H2cHandoff.NewSocketPath();
server.Kestrel.Limits.MaxRequestBodySize = null; // uploads stream to disk; Connect messages have their own limit
server.Kestrel.Listen(System.Net.IPAddress.Parse(options.ListenAddress), options.Port, listen =>
{
    listen.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1;
    listen.UseH2cHandoff(h2cSocket);
});
H2cHandoff.ListenPrivate(server.Kestrel, h2cSocket);
// 64 KiB buffers for Kestrel instead of 4 KiB: fewer system calls per byte of the large bodies the agent moves.
var memoryPools = new LargeBlockMemoryPoolFactory();
var services = new AgentServices(
    options,
    new ConnectServerOptions { MaxMessageBytes = options.MaxMessageBytes },
    new UserDirectory(options.DefaultUser),
    new AccessTokenCheck(options.AccessToken),
    ProcessServiceExtensions.LoadEnvironment(),
    loggers,
    server.Lifetime);

// PID 1 of a sandbox: shutdown signals that may come from the sandbox's own processes are ignored (SandboxInitLifetime).
Microsoft.Extensions.Hosting.IHostLifetime stopSignals = SandboxInitLifetime.IsInit
    ? new SandboxInitLifetime(server.Lifetime, new Logger<SandboxInitLifetime>(loggers))
    : new ConsoleStopSignals(server.Lifetime);

var app = new AgentRoutes(services);
// Idle memory back to the kernel after a quiet spell (IdleTrim); first, so that it sees every request.
using var idleTrim = new IdleTrim(IdleTrim.DefaultQuietPeriod, () => IdleTrim.CollectAndDecommit(memoryPools), TimeProvider.System);
app.Use(idleTrim.InvokeAsync);
server.Lifetime.ApplicationStarted.Register(idleTrim.Start);
app.Use(services.TokenCheck.InvokeAsync);

app.MapGet("/health", http =>
{
    http.Response.StatusCode = StatusCodes.Status204NoContent;
    // When the listening sockets were bound: the daemon's wait after a gVisor restore (RestoreWatch) reads it.
    http.Response.Headers["X-Paddock-Listening-Since"] = server.ListeningSince.ToString(System.Globalization.CultureInfo.InvariantCulture);
    return Task.CompletedTask;
});
// envd's GET /envs: the sandbox-wide variables every command starts with.
app.MapGet("/envs", async http =>
{
    http.Response.ContentType = "application/json";
    await using var json = new System.Text.Json.Utf8JsonWriter(http.Response.Body);
    json.WriteStartObject();
    foreach (var (key, value) in services.Environment.SandboxVariables)
    {
        json.WriteString(key, value);
    }
    json.WriteEndObject();
});
app.MapInit();
var supervisor = app.MapProcessService(server);
app.MapFilesystemService();
app.MapFileTransfer();

server.Lifetime.ApplicationStarted.Register(() => H2cHandoff.Restrict(h2cSocket));
server.Lifetime.ApplicationStopped.Register(() => File.Delete(h2cSocket));

await server.RunAsync(app, memoryPools, stopSignals, supervisor);
return 0;
