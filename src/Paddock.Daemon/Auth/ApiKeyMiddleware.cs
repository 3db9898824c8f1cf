using Paddock.Daemon.Api;
using Paddock.Daemon.Teams;

namespace Paddock.Daemon.Auth;

/// <summary>
/// Every control-plane request but <c>GET /health</c> and the volume content API (Volumes/) must carry a valid <c>X-API-Key</c>; otherwise 401 with E2B's
/// error body. Sandbox traffic never reaches this: the proxy runs first, and there the agent's access token and the
/// traffic token are what count.
/// </summary>
internal sealed class ApiKeyMiddleware(RequestDelegate next, ApiKeyAuthenticator authenticator, TeamDirectory directory, ILogger<ApiKeyMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext http)
    {
        if ((HttpMethods.IsGet(http.Request.Method) && http.Request.Path == "/health")
            || http.Request.Path.StartsWithSegments("/volumecontent", StringComparison.Ordinal))
        {
            // /volumecontent: E2B's volume content API, whose credential is the volume's own token (checked there).
            await next(http);
            return;
        }
        var key = http.Request.Headers[ApiKeyAuthenticator.HeaderName];
        if (key.Count == 0 && http.Request.Path == "/metrics" && http.Request.Headers.Authorization.ToString() is { } authorization
            && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            // Prometheus sends a scrape's credentials as a Bearer token; it cannot set X-API-Key on every version.
            key = authorization[7..].Trim();
        }
        var reason = authenticator.Authenticate(key, out var caller);
        if (reason is null)
        {
            http.SetCaller(caller!);
            await directory.NoteUsedAsync(caller!);
            await next(http);
            return;
        }
        AuthLog.Refused(logger, http.Request.Method, http.Request.Path, http.Connection.RemoteIpAddress?.ToString(), reason);
        await ApiErrorMiddleware.WriteAsync(http, StatusCodes.Status401Unauthorized, reason);
    }
}
