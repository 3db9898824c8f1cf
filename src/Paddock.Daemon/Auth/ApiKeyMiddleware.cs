using Paddock.Daemon.Api;
using Paddock.Daemon.Dashboard;
using Paddock.Daemon.Teams;

namespace Paddock.Daemon.Auth;

/// <summary>
/// Every control-plane request but <c>GET /health</c> and the volume content API (Volumes/) must carry a valid <c>X-API-Key</c>; otherwise 401 with E2B's
/// error body. Sandbox traffic never reaches this: the proxy runs first, and there the agent's access token and the
/// traffic token are what count. A dashboard session's cookie stands for its key (<see cref="DashboardSessions"/>): the
/// key it holds is checked here as if sent in the header, and a call that changes something must carry the session's
/// CSRF token as well (the check itself: <see cref="ApiKeyCheck"/>). The dashboard's own files and its sign-in are open.
/// </summary>
internal sealed class ApiKeyMiddleware(RequestDelegate next, ApiKeyCheck check, TeamDirectory directory, ILogger<ApiKeyMiddleware> logger)
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
        var result = check.Check(http);
        if (result.Caller is { } caller)
        {
            http.SetCaller(caller);
            await directory.NoteUsedAsync(caller);
            await next(http);
            return;
        }
        AuthLog.Refused(logger, http.Request.Method, http.Request.Path, http.Connection.RemoteIpAddress?.ToString(), result.Refusal!);
        await ApiErrorMiddleware.WriteAsync(http, result.Status, result.Refusal!);
    }
}
