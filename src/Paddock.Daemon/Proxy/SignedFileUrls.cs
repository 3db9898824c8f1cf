using System.Security.Cryptography;
using System.Text;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Proxy;

/// <summary>
/// Routes a signed file URL that names no sandbox. With <c>E2B_SANDBOX_URL</c> set (Paddock's local default), the SDK's
/// <c>downloadUrl()</c>/<c>uploadUrl()</c> is <c>{E2B_SANDBOX_URL}/files?path=..&amp;signature=v1_...</c>: meant for a
/// browser, it carries no <c>E2b-Sandbox-*</c> header and no sandbox host, so it reached the control plane and was
/// refused for want of an API key (401), whatever its signature (issue 18). The signature itself says which sandbox
/// it is for: it is <c>sha256("{path}:{operation}:{user}:{token}[:{expiration}]")</c>, and only that sandbox's access
/// token makes it (E2B's SDK, src/sandbox/signature.ts). So the sandbox is the running secure one whose token
/// reproduces it; the agent then checks the signature and its expiration again, with envd's messages.
/// </summary>
/// <remarks>
/// One SHA-256 of a short string per secure running sandbox (at most <see cref="DaemonOptions.MaxSandboxes"/>) per such
/// request: microseconds. The comparison is of digests, so it tells a caller nothing about any token.
/// </remarks>
internal static class SignedFileUrls
{
    /// <summary>Whether the request is a signed <c>/files</c> call (it may still match no sandbox).</summary>
    public static bool IsSignedFileRequest(HttpRequest request) =>
        request.Path == "/files" && request.Query.ContainsKey("signature");

    /// <summary>The running sandbox whose access token made the request's signature, or null.</summary>
    public static string? FindSandbox(HttpRequest request, IEnumerable<SandboxRecord> running)
    {
        var query = request.Query;
        var presented = Encoding.UTF8.GetBytes(query["signature"].ToString());
        var operation = HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method) ? "read" : "write";
        var path = query["path"].ToString();
        var user = query["username"].ToString();
        var expiration = query["signature_expiration"].ToString();
        foreach (var sandbox in running)
        {
            if (sandbox.EnvdAccessToken is not { Length: > 0 } token)
            {
                continue;
            }
            var raw = expiration.Length == 0 ? $"{path}:{operation}:{user}:{token}" : $"{path}:{operation}:{user}:{token}:{expiration}";
            var expected = "v1_" + Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(raw))).TrimEnd('=');
            if (CryptographicOperations.FixedTimeEquals(presented, Encoding.UTF8.GetBytes(expected)))
            {
                return sandbox.SandboxId;
            }
        }
        return null;
    }
}
