using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Paddock.Daemon.Tests.Templates.Images;

/// <summary>
/// An OCI registry on loopback port 0, serving one repository from a <see cref="TestImage"/> (distribution-spec
/// pull routes: manifests by tag or digest, blobs by digest). With a token it behaves as Docker Hub does: 401 with a
/// Bearer challenge naming its own /token realm, which hands out the token for the repository's pull scope.
/// </summary>
internal sealed class TestRegistry : IAsyncDisposable
{
    public const string Token = "test-token-3f9a";

    private readonly WebApplication _app;

    private TestRegistry(WebApplication app, Uri url)
    {
        _app = app;
        Url = url;
    }

    public Uri Url { get; }

    /// <summary>Every request path, for asserting what was fetched.</summary>
    public ConcurrentQueue<string> Requests { get; } = new();

    public static async Task<TestRegistry> StartAsync(string repository, string tag, TestImage image, bool requireToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var index = image.IndexBytes();
        var manifest = image.ManifestBytes();
        var blobs = image.Blobs();
        TestRegistry? self = null;
        app.MapGet("/token", (HttpContext http) =>
            http.Request.Query["scope"] == $"repository:{repository}:pull" && http.Request.Query["service"] == "test-registry"
                ? Results.Text($$"""{"token":"{{Token}}"}""", "application/json")
                : Results.StatusCode(StatusCodes.Status403Forbidden));
        app.MapGet("/v2/{**rest}", (string rest, HttpContext http) =>
        {
            self!.Requests.Enqueue(http.Request.Path);
            if (requireToken && http.Request.Headers.Authorization != "Bearer " + Token)
            {
                http.Response.Headers.WWWAuthenticate = $"Bearer realm=\"{self.Url}token\",service=\"test-registry\",scope=\"repository:{repository}:pull\"";
                return Results.Json(new { errors = new[] { new { code = "UNAUTHORIZED" } } }, statusCode: StatusCodes.Status401Unauthorized);
            }
            if (rest == $"{repository}/manifests/{tag}")
            {
                return Results.Bytes(index, "application/vnd.oci.image.index.v1+json");
            }
            if (rest.StartsWith($"{repository}/manifests/sha256:", StringComparison.Ordinal)
                && rest[$"{repository}/manifests/".Length..] == "sha256:" + Convert.ToHexStringLower(SHA256.HashData(manifest)))
            {
                return Results.Bytes(manifest, "application/vnd.oci.image.manifest.v1+json");
            }
            if (rest.StartsWith($"{repository}/blobs/", StringComparison.Ordinal) && blobs.TryGetValue(rest[$"{repository}/blobs/".Length..], out var blob))
            {
                return Results.Bytes(blob, "application/octet-stream");
            }
            return Results.Json(new { errors = new[] { new { code = "NAME_UNKNOWN" } } }, statusCode: StatusCodes.Status404NotFound);
        });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await app.StartAsync(timeout.Token);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        self = new TestRegistry(app, new Uri(address.TrimEnd('/') + "/"));
        return self;
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }
}
