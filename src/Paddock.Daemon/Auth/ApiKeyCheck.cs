using Paddock.Daemon.Dashboard;

namespace Paddock.Daemon.Auth;

/// <summary>
/// Who a control-plane request comes from: its <c>X-API-Key</c> header; else its dashboard session's key
/// (<see cref="DashboardSessions"/>), which a call that changes something may use only with the session's CSRF token;
/// else, for <c>/metrics</c> only, an <c>Authorization: Bearer</c> key. The one resolution that both
/// <see cref="ApiKeyMiddleware"/> (which answers a refusal) and cluster mode's router (which places or forwards nothing
/// for a request that would be refused: Cluster/ClusterRouter) use.
/// </summary>
internal sealed class ApiKeyCheck(ApiKeyAuthenticator authenticator, DashboardSessions sessions)
{
    public KeyCheckResult Check(HttpContext http)
    {
        var key = http.Request.Headers[ApiKeyAuthenticator.HeaderName];
        var bySession = false;
        if (key.Count == 0 && http.Request.Cookies.ContainsKey(DashboardSessions.CookieName))
        {
            key = sessions.KeyFor(http, out var csrfRefusal);
            if (csrfRefusal is not null)
            {
                return new KeyCheckResult(null, null, StatusCodes.Status403Forbidden, csrfRefusal);
            }
            bySession = key.Count > 0;
        }
        if (key.Count == 0 && http.Request.Path == "/metrics" && http.Request.Headers.Authorization.ToString() is { } authorization
            && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            // Prometheus sends a scrape's credentials as a Bearer token; it cannot set X-API-Key on every version.
            key = authorization[7..].Trim();
        }
        var reason = authenticator.Authenticate(key, out var caller);
        return reason is null
            ? new KeyCheckResult(caller, bySession ? key.ToString() : null, StatusCodes.Status200OK, null)
            : new KeyCheckResult(null, null, StatusCodes.Status401Unauthorized, reason);
    }
}

/// <summary>
/// The outcome of <see cref="ApiKeyCheck.Check"/>: the caller, or the status (401, or 403 for a session call without
/// its CSRF token) and message to refuse with.
/// </summary>
/// <param name="SessionKey">The key of the dashboard session the caller came by; null when it sent a key itself.</param>
internal readonly record struct KeyCheckResult(Caller? Caller, string? SessionKey, int Status, string? Refusal);
