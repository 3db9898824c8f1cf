using Paddock.Daemon.Api;
using Paddock.Daemon.Dashboard;
using Paddock.Daemon.Teams;

namespace Paddock.Daemon.Auth;

/// <summary>
/// Every control-plane request but <c>GET /health</c> and the volume content API (Volumes/) must carry a valid <c>X-API-Key</c>; otherwise 401 with E2B's
/// error body. Sandbox traffic never reaches this: the proxy runs first, and there the agent's access token and the
/// traffic token are what count. A dashboard session's cookie stands for its key (<see cref="DashboardSessions"/>): the
/// key it holds is checked here as if sent in the header, and a call that changes something must carry the session's
/// CSRF token as well. The dashboard's own files and its sign-in are open.
/// </summary>
internal sealed class ApiKeyMiddleware(RequestDelegate next, ApiKeyAuthenticator authenticator, TeamDirectory directory, DashboardSessions sessions, ILogger<ApiKeyMiddleware> logger)
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
        if (DashboardEndpoints.IsOpen(http.Request.Path))
        {
            await next(http);
            return;
        }
        var key = http.Request.Headers[ApiKeyAuthenticator.HeaderName];
        if (key.Count == 0 && http.Request.Cookies.ContainsKey(DashboardSessions.CookieName))
        {
            key = sessions.KeyFor(http, out var csrfRefusal);
            if (csrfRefusal is not null)
            {
                AuthLog.Refused(logger, http.Request.Method, http.Request.Path, http.Connection.RemoteIpAddress?.ToString(), csrfRefusal);
                await ApiErrorMiddleware.WriteAsync(http, StatusCodes.Status403Forbidden, csrfRefusal);
                return;
            }
        }
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
