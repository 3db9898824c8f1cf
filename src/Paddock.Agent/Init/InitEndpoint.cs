using Paddock.Agent.Auth;
using Paddock.Agent.Hosting;
using Paddock.Agent.Processes;
using Paddock.Agent.Users;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Init;

/// <summary>
/// envd's <c>POST /init</c>: the host hands a started agent the sandbox's settings (variables every later process
/// starts with, the access token, the default user). paddockd uses it to give a warm pool member to its claimer.
/// Authentication is the agent's middleware: once a token is set, /init needs it like every other route.
/// </summary>
internal static class InitEndpoint
{
    public static AgentRoutes MapInit(this AgentRoutes app)
    {
        var services = app.Services;
        var logger = services.Loggers.CreateLogger("Paddock.Agent.Init");
        app.MapPost("/init", http => HandleAsync(http, services.Environment, services.Users, services.TokenCheck, services.Options, logger));
        return app;
    }

    private static async Task HandleAsync(HttpContext http, ProcessEnvironment environment, UserDirectory users,
        AccessTokenCheck tokenCheck, AgentOptions options, ILogger logger)
    {
        InitRequest request;
        try
        {
            request = InitRequest.Parse(await ReadBodyAsync(http.Request, http.RequestAborted));
            Validate(request, users, options);
        }
        catch (InitRequestException ex)
        {
            InitLog.Refused(logger, ex.Message);
            http.Response.StatusCode = StatusCodes.Status400BadRequest;
            http.Response.ContentType = "application/json";
            await http.Response.WriteAsync(
                "{\"code\":400,\"message\":" + System.Text.Json.JsonSerializer.Serialize(ex.Message, InitJsonContext.Default.String) + "}",
                http.RequestAborted);
            return;
        }

        // Everything was checked above, so the request applies whole. The token goes last: until the response, the
        // caller holding the old token may still be the one setting the rest.
        foreach (var (name, value) in request.EnvVars)
        {
            environment.SandboxVariables[name] = value;
        }
        if (request.DefaultUser is { Length: > 0 } user)
        {
            users.DefaultUserName = user;
        }
        if (request.AccessToken is { } token)
        {
            tokenCheck.Replace(token);
        }
        InitLog.Initialized(logger, request.EnvVars.Count,
            request.AccessToken is null ? "unchanged" : request.AccessToken.Length == 0 ? "removed" : "set",
            users.DefaultUserName ?? "(the agent's own)");
        http.Response.StatusCode = StatusCodes.Status204NoContent;
    }

    private static void Validate(InitRequest request, UserDirectory users, AgentOptions options)
    {
        if (request.DefaultUser is { Length: > 0 } user)
        {
            try
            {
                users.Resolve(user);
            }
            catch (ConnectException ex)
            {
                throw new InitRequestException($"defaultUser: {ex.Message}");
            }
        }
        // The default working directory is fixed at start (the filesystem and file routes take it then); a change
        // is refused rather than half applied.
        if (request.DefaultWorkdir is { Length: > 0 } workdir && !string.Equals(workdir, options.DefaultWorkdir, StringComparison.Ordinal))
        {
            throw new InitRequestException("defaultWorkdir cannot be changed after the agent started (start it with --default-workdir)");
        }
    }

    private static async Task<byte[]> ReadBodyAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        if (request.ContentLength > InitRequest.MaxBodyBytes)
        {
            throw new InitRequestException($"the body is larger than {InitRequest.MaxBodyBytes} bytes");
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, cancellationToken)) > 0)
        {
            if (buffer.Length + read > InitRequest.MaxBodyBytes)
            {
                throw new InitRequestException($"the body is larger than {InitRequest.MaxBodyBytes} bytes");
            }
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class InitJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
