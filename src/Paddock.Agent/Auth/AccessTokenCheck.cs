using System.Globalization;
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

    // The messages and their order are envd's (packages/envd/internal/api/auth.go of e2b-dev/infra): the signature is
    // compared first, so a forged URL is "invalid signature" whatever its expiration, and only a genuine one past its
    // time is "signature is already expired"; E2B's SDK tests compare these bodies exactly.
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
            if (!long.TryParse(expirationText, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var e))
            {
                return $"invalid signature_expiration '{expirationText}': expected Unix seconds";
            }
            expiration = e;
        }
        var expected = Sign(path, operation, user, token, expiration);
        if (!FixedTimeEquals(query["signature"].ToString(), Encoding.UTF8.GetBytes(expected)))
        {
            return "invalid signature";
        }
        return expiration < now.ToUnixTimeSeconds() ? "signature is already expired" : null;
    }

    /// <summary>The signature E2B's SDKs compute for a file URL.</summary>
    internal static string Sign(string path, string operation, string user, string token, long? expiration)
    {
        var raw = expiration is null ? $"{path}:{operation}:{user}:{token}" : $"{path}:{operation}:{user}:{token}:{expiration}";
        return "v1_" + Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(raw))).TrimEnd('=');
    }

    private static bool FixedTimeEquals(string presented, byte[] expected) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(presented), expected);

    private static async Task Reject(HttpContext http, string message)
    {
        http.Response.StatusCode = StatusCodes.Status401Unauthorized;
        http.Response.ContentType = "application/json";
        // Connect callers get Connect's error shape; /files and the rest get envd's {"code":401,"message":...}.
        // The message may quote the request (a bad signature_expiration), so it is written escaped.
        await using var json = new System.Text.Json.Utf8JsonWriter(http.Response.Body);
        json.WriteStartObject();
        if (IsConnect(http.Request.ContentType))
        {
            json.WriteString("code", "unauthenticated");
        }
        else
        {
            json.WriteNumber("code", StatusCodes.Status401Unauthorized);
        }
        json.WriteString("message", message);
        json.WriteEndObject();
        await json.FlushAsync(http.RequestAborted);
    }

    private static bool IsConnect(string? contentType) =>
        contentType is not null && (contentType.StartsWith("application/proto", StringComparison.OrdinalIgnoreCase)
            || contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase)
            || contentType.StartsWith("application/connect", StringComparison.OrdinalIgnoreCase));

    private sealed record Token(string Text, byte[] Bytes);
}
