using System.Security.Cryptography;
using System.Text;

namespace Paddock.Agent.Auth;

/// <summary>
/// When the agent has an access token, every request but <c>GET /health</c> must prove it knows it: by the
/// <c>X-Access-Token</c> header, or, for <c>/files</c>, by a URL signature the way E2B's SDKs make one:
/// <c>"v1_" + base64(sha256("{path}:{read|write}:{user}:{token}[:{expiration}]"))</c> without padding, with
/// <c>signature_expiration</c> in Unix seconds.
/// </summary>
internal sealed class AccessTokenCheck
{
    // One immutable pair swapped whole: POST /init replaces the token while requests are being checked.
    private volatile Token? _current;

    public AccessTokenCheck(string? token)
    {
        Replace(token);
    }

    public bool Enabled => _current is not null;

    /// <summary>Sets the token every later request must carry (E2B's <c>POST /init</c>); null or empty: none.</summary>
    public void Replace(string? token) =>
        _current = string.IsNullOrEmpty(token) ? null : new Token(token, Encoding.UTF8.GetBytes(token));

    public async Task InvokeAsync(HttpContext http, RequestDelegate next)
    {
        var current = _current;
        if (current is null || (http.Request.Path == "/health" && HttpMethods.IsGet(http.Request.Method)))
        {
            await next(http);
            return;
        }
        var header = http.Request.Headers["X-Access-Token"].ToString();
        if (header.Length > 0)
        {
            if (FixedTimeEquals(header, current.Bytes))
            {
                await next(http);
                return;
            }
            await Reject(http, "the X-Access-Token header does not match this sandbox's access token");
            return;
        }
        if (http.Request.Path == "/files" && http.Request.Query.ContainsKey("signature"))
        {
            var error = CheckSignature(http, current.Text, DateTimeOffset.UtcNow);
            if (error is null)
            {
                await next(http);
                return;
            }
            await Reject(http, error);
            return;
        }
        await Reject(http, "this sandbox requires an access token: send X-Access-Token or use a signed URL");
    }

    /// <summary>Null when the request's signature is valid, else why not.</summary>
    internal string? CheckSignature(HttpContext http, DateTimeOffset now) =>
        _current is { } current ? CheckSignature(http, current.Text, now) : null;

    private static string? CheckSignature(HttpContext http, string token, DateTimeOffset now)
    {
        var query = http.Request.Query;
        var operation = HttpMethods.IsGet(http.Request.Method) || HttpMethods.IsHead(http.Request.Method) ? "read" : "write";
        var path = query["path"].ToString();
        var user = query["username"].ToString();
        var expirationText = query["signature_expiration"].ToString();
        long? expiration = null;
        if (expirationText.Length > 0)
        {
            if (!long.TryParse(expirationText, out var e))
            {
                return $"invalid signature_expiration '{expirationText}': expected Unix seconds";
            }
            if (e < now.ToUnixTimeSeconds())
            {
                return "the URL signature has expired";
            }
            expiration = e;
        }
        var expected = Sign(path, operation, user, token, expiration);
        return FixedTimeEquals(query["signature"].ToString(), Encoding.UTF8.GetBytes(expected))
            ? null
            : "the URL signature does not match this path, operation, user and token";
    }

    /// <summary>The signature E2B's SDKs compute for a file URL.</summary>
    internal static string Sign(string path, string operation, string user, string token, long? expiration)
    {
        var raw = expiration is null ? $"{path}:{operation}:{user}:{token}" : $"{path}:{operation}:{user}:{token}:{expiration}";
        return "v1_" + Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(raw))).TrimEnd('=');
    }

    private static bool FixedTimeEquals(string presented, byte[] expected) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(presented), expected);

    private static Task Reject(HttpContext http, string message)
    {
        http.Response.StatusCode = StatusCodes.Status401Unauthorized;
        if (IsConnect(http.Request.ContentType))
        {
            http.Response.ContentType = "application/json";
            return http.Response.WriteAsync("{\"code\":\"unauthenticated\",\"message\":\"" + message + "\"}");
        }
        http.Response.ContentType = "application/json";
        return http.Response.WriteAsync("{\"code\":401,\"message\":\"" + message + "\"}");
    }

    private static bool IsConnect(string? contentType) =>
        contentType is not null && (contentType.StartsWith("application/proto", StringComparison.OrdinalIgnoreCase)
            || contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase)
            || contentType.StartsWith("application/connect", StringComparison.OrdinalIgnoreCase));

    private sealed record Token(string Text, byte[] Bytes);
}
