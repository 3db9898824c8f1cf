using Paddock.Daemon.Api;

namespace Paddock.Daemon.Auth;

/// <summary>
/// Every control-plane request but <c>GET /health</c> must carry a valid <c>X-API-Key</c>; otherwise 401 with E2B's
/// error body. Sandbox traffic never reaches this: the proxy runs first, and there the agent's access token and the
/// traffic token are what count.
/// </summary>
internal sealed class ApiKeyMiddleware(RequestDelegate next, ApiKeyAuthenticator authenticator, ILogger<ApiKeyMiddleware> logger)
{
    public Task InvokeAsync(HttpContext http)
    {
        if (HttpMethods.IsGet(http.Request.Method) && http.Request.Path == "/health")
        {
            return next(http);
        }
        var reason = authenticator.Check(http.Request.Headers[ApiKeyAuthenticator.HeaderName]);
        if (reason is null)
        {
            return next(http);
        }
        AuthLog.Refused(logger, http.Request.Method, http.Request.Path, http.Connection.RemoteIpAddress?.ToString(), reason);
        return ApiErrorMiddleware.WriteAsync(http, StatusCodes.Status401Unauthorized, reason);
    }
}
