using Paddock.Agent;
using Paddock.Agent.Auth;
using Paddock.Agent.Connect;
using Paddock.Agent.Files;
using Paddock.Agent.Filesystem;
using Paddock.Agent.Hosting;
using Paddock.Agent.Init;
using Paddock.Agent.Processes;
using Paddock.Agent.Users;

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

// No reloadOnChange for appsettings*.json: it makes the host watch the working directory recursively with inotify
// (one watch per directory below it: 840 for /tmp here, the whole rootfs when started in /), slowing the start and
// spending the inotify watches that WatchDir needs.
var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
builder.Logging.SetMinimumLevel(LogLevel.Warning);
var h2cSocket = H2cHandoff.NewSocketPath();
builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.Limits.MaxRequestBodySize = null; // uploads stream to disk; Connect messages have their own limit
    kestrel.Listen(System.Net.IPAddress.Parse(options.ListenAddress), options.Port, listen =>
    {
        listen.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1;
        listen.UseH2cHandoff(h2cSocket);
    });
    H2cHandoff.ListenPrivate(kestrel, h2cSocket);
});
// 64 KiB buffers for Kestrel instead of 4 KiB: fewer system calls per byte of the large bodies the agent moves.
var memoryPools = new LargeBlockMemoryPoolFactory();
builder.Services.AddSingleton<Microsoft.AspNetCore.Connections.IMemoryPoolFactory<byte>>(memoryPools);
builder.Services.AddSingleton(options);
builder.Services.AddSingleton(new ConnectServerOptions { MaxMessageBytes = options.MaxMessageBytes });
builder.Services.AddSingleton(new UserDirectory(options.DefaultUser));
builder.Services.AddSingleton(new AccessTokenCheck(options.AccessToken));
builder.Services.AddProcessService();

// PID 1 of a sandbox: shutdown signals that may come from the sandbox's own processes are ignored (SandboxInitLifetime).
if (SandboxInitLifetime.IsInit)
{
    builder.Services.AddSingleton<Microsoft.Extensions.Hosting.IHostLifetime, SandboxInitLifetime>();
}
var app = builder.Build();
// Idle memory back to the kernel after a quiet spell (IdleTrim); first, so that it sees every request.
using var idleTrim = new IdleTrim(IdleTrim.DefaultQuietPeriod, () => IdleTrim.CollectAndDecommit(memoryPools), TimeProvider.System);
app.Use(idleTrim.InvokeAsync);
app.Lifetime.ApplicationStarted.Register(idleTrim.Start);
var tokenCheck = app.Services.GetRequiredService<AccessTokenCheck>();
app.Use(tokenCheck.InvokeAsync);

app.MapGet("/health", () => Results.NoContent());
// envd's GET /envs: the sandbox-wide variables every command starts with.
app.MapGet("/envs", async (HttpContext http, ProcessEnvironment environment) =>
{
    http.Response.ContentType = "application/json";
    await using var json = new System.Text.Json.Utf8JsonWriter(http.Response.Body);
    json.WriteStartObject();
    foreach (var (key, value) in environment.SandboxVariables)
    {
        json.WriteString(key, value);
    }
    json.WriteEndObject();
});
app.MapInit();
app.MapProcessService();
app.MapFilesystemService();
app.MapFileTransfer();

app.Lifetime.ApplicationStarted.Register(() => H2cHandoff.Restrict(h2cSocket));
app.Lifetime.ApplicationStopped.Register(() => File.Delete(h2cSocket));

await app.RunAsync();
return 0;
