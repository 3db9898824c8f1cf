using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Paddock.Daemon.Proxy;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Tests.Proxy;

public sealed class SignedFileUrlsTests
{
    // The signature as E2B's SDK 2.51.0 computes it (dist/index.mjs, getSignature): written out here, not shared with
    // the code under test, so that a change to either shows.
    private static string SdkSignature(string path, string operation, string user, string token, long? expiration) =>
        "v1_" + Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(
            expiration is null ? $"{path}:{operation}:{user}:{token}" : $"{path}:{operation}:{user}:{token}:{expiration}"))).TrimEnd('=');

    private static SandboxRecord Sandbox(string id, string? token) => new()
    {
        SandboxId = id,
        TemplateId = "base",
        RuntimeName = "runc",
        State = SandboxState.Running,
        CpuCount = 1,
        MemoryMB = 512,
        DiskSizeMB = 1024,
        MaxPids = 1024,
        StartedAt = DateTimeOffset.UnixEpoch,
        EndAt = DateTimeOffset.UnixEpoch.AddDays(1),
        EnvdAccessToken = token,
    };

    private static HttpRequest Request(string method, string query)
    {
        var http = new DefaultHttpContext();
        http.Request.Method = method;
        http.Request.Path = "/files";
        http.Request.QueryString = new QueryString(query);
        return http.Request;
    }

    [Fact]
    public void The_sandbox_whose_token_made_the_signature_is_found_and_no_other()
    {
        SandboxRecord[] running = [Sandbox("aaaaaaaaaaaaaaaaaaaa", null), Sandbox("bbbbbbbbbbbbbbbbbbbb", "token-b"), Sandbox("cccccccccccccccccccc", "token-c")];
        var read = SdkSignature("hello.txt", "read", "", "token-c", 1_900_000_000);
        var query = $"?path=hello.txt&signature={Uri.EscapeDataString(read)}&signature_expiration=1900000000";

        Assert.True(SignedFileUrls.IsSignedFileRequest(Request("GET", query)));
        Assert.Equal("cccccccccccccccccccc", SignedFileUrls.FindSandbox(Request("GET", query), running));
        // The same signature for a write, another path or another user matches no sandbox.
        Assert.Null(SignedFileUrls.FindSandbox(Request("POST", query), running));
        Assert.Null(SignedFileUrls.FindSandbox(Request("GET", query.Replace("hello.txt&", "other.txt&", StringComparison.Ordinal)), running));
        Assert.Null(SignedFileUrls.FindSandbox(Request("GET", query + "&username=root"), running));

        var write = SdkSignature("/root/up.txt", "write", "root", "token-b", null);
        Assert.Equal("bbbbbbbbbbbbbbbbbbbb", SignedFileUrls.FindSandbox(Request("POST", $"?path=/root/up.txt&username=root&signature={Uri.EscapeDataString(write)}"), running));
        Assert.False(SignedFileUrls.IsSignedFileRequest(Request("GET", "?path=hello.txt")));
    }
}
