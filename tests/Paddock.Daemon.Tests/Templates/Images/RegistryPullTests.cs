using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Paddock.Daemon.Templates;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Sandboxes;
using static Paddock.Daemon.Tests.Api.ApiClient;
using static Paddock.Daemon.Tests.Templates.Images.TestImage;

namespace Paddock.Daemon.Tests.Templates.Images;

/// <summary>
/// fromImage(ref) in E2B's build API: pulled from an in-test registry on loopback (anonymous, and one that demands a
/// Bearer token), the linux/amd64 image picked from an index, imported as the team's template named by the ref,
/// which a later build resolves without any registry; and the clear 400s when no registry is configured or it is
/// not reachable. Builds without steps, so no sandbox starts (the runc test builds on an image).
/// </summary>
public sealed class RegistryPullTests : IAsyncLifetime
{
    private readonly TempDir _state = new();
    private readonly LocalAgentRuntime _runtime = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _runtime.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FromImage_pulls_from_the_configured_registry_and_later_resolves_the_imported_template(bool requireToken)
    {
        var image = ImageImportTests.TwoLayers();
        string imported, reference;
        await using (var registry = await TestRegistry.StartAsync("tests/tools", "1.0", image, requireToken))
        await using (var daemon = await TestDaemon.StartAsync(_runtime, _state.Path, o => o with { ImageRegistry = registry.Url }))
        {
            reference = $"{registry.Url.Authority}/tests/tools:1.0";
            var built = await BuildAsync(daemon, "from-registry", reference);
            Assert.True(built.Status == "ready", $"build ended {built.Status}: {built.Reason}");
            var templates = daemon.Services.GetRequiredService<TemplateRegistry>();
            var pulled = await templates.ResolveAsync(reference, "default", CancellationToken.None);
            Assert.NotNull(pulled);
            Assert.Equal(TemplateKind.Image, pulled.Kind);
            imported = pulled.TemplateId;
            var root = Assert.Single(pulled.Layers);
            Assert.Equal("new\n", File.ReadAllText(Path.Combine(root, "app/replaced.txt")));
            Assert.False(File.Exists(Path.Combine(root, "app/gone.txt")));
            var template = await templates.ResolveAsync("from-registry", "default", CancellationToken.None);
            Assert.Equal(pulled.Layers, template!.Layers);
            Assert.Equal("app", template.DefaultUser);
            Assert.Equal("/app", template.Workdir);
            // The arm64 image of the index was never asked for; the token dance happened only when demanded.
            Assert.DoesNotContain(registry.Requests, r => r.Contains(new string('e', 64), StringComparison.Ordinal));
            Assert.Contains(registry.Requests, r => r.Contains("/blobs/" + image.Layers[1].Digest, StringComparison.Ordinal));
            Assert.Equal(requireToken, registry.Requests.Count(r => r.Contains("/manifests/1.0", StringComparison.Ordinal)) == 2);

            // Another team does not see the pulled template (its own fromImage would pull into a template of its own).
            Assert.Null(await templates.ResolveAsync(reference, "other-team", CancellationToken.None));
        }

        // The registry is gone; the ref names an imported template, so a build needs none.
        await using (var daemon = await TestDaemon.StartAsync(_runtime, _state.Path, o => o with { ImageRegistry = new Uri("http://127.0.0.1:9/") }))
        {
            var again = await BuildAsync(daemon, "from-registry-2", reference);
            Assert.Equal(imported, (await daemon.Services.GetRequiredService<TemplateRegistry>().ResolveAsync("from-registry-2", "default", CancellationToken.None))!.ParentId);
            Assert.True(again.Status == "ready", $"build ended {again.Status}: {again.Reason}");
        }
    }

    [Fact]
    public async Task FromImage_without_a_registry_or_with_an_unreachable_one_is_a_clear_400()
    {
        await using (var daemon = await TestDaemon.StartAsync(_runtime, _state.Path))
        {
            var message = await RefusedAsync(daemon, "tests/nosuch:2");
            Assert.Contains("tests/nosuch:2", message, StringComparison.Ordinal);
            Assert.Contains("no image registry is configured", message, StringComparison.Ordinal);
        }
        // Port 9 (discard) on loopback: nothing listens there on these hosts.
        await using (var daemon = await TestDaemon.StartAsync(_runtime, _state.Path, o => o with { ImageRegistry = new Uri("http://127.0.0.1:9/") }))
        {
            var message = await RefusedAsync(daemon, "tests/nosuch:2");
            Assert.Contains("tests/nosuch:2", message, StringComparison.Ordinal);
            Assert.Contains("cannot be reached", message, StringComparison.Ordinal);
            Assert.Contains("other.example:5000", await RefusedAsync(daemon, "other.example:5000/tests/nosuch:2"), StringComparison.Ordinal);
        }
    }

    private static async Task<string> RefusedAsync(TestDaemon daemon, string reference)
    {
        var (templateId, buildId) = await RequestBuildAsync(daemon, "refused");
        return AssertError(HttpStatusCode.BadRequest, await SendAsync(daemon.Api, HttpMethod.Post, $"/v2/templates/{templateId}/builds/{buildId}",
            new JsonObject { ["fromImage"] = reference, ["steps"] = new JsonArray() }.ToJsonString()));
    }

    private static async Task<(string TemplateId, string BuildId)> RequestBuildAsync(TestDaemon daemon, string name)
    {
        var requested = await SendAsync(daemon.Api, HttpMethod.Post, "/v3/templates", $$"""{"name":"{{name}}"}""");
        Assert.Equal(HttpStatusCode.Accepted, requested.Status);
        return ((string)requested.Body!["templateID"]!, (string)requested.Body!["buildID"]!);
    }

    /// <summary>Requests and starts a build from <paramref name="fromImage"/>, then polls its status until it ends (at most 60 s).</summary>
    internal static async Task<(string Status, string? Reason, string TemplateId)> BuildAsync(TestDaemon daemon, string name, string fromImage, JsonArray? steps = null)
    {
        var (templateId, buildId) = await RequestBuildAsync(daemon, name);
        var started = await SendAsync(daemon.Api, HttpMethod.Post, $"/v2/templates/{templateId}/builds/{buildId}",
            new JsonObject { ["fromImage"] = fromImage, ["steps"] = steps ?? new JsonArray() }.ToJsonString());
        Assert.True(started.Status == HttpStatusCode.Accepted, $"build start answered {(int)started.Status}: {started.Body?.ToJsonString()}");
        // Bounded: 600 polls of 100 ms.
        for (var i = 0; i < 600; i++)
        {
            var status = await SendAsync(daemon.Api, HttpMethod.Get, $"/templates/{templateId}/builds/{buildId}/status");
            var state = (string)status.Body!["status"]!;
            if (state is "ready" or "error")
            {
                return (state, status.Body["reason"]?.ToJsonString() + " " + status.Body["logs"]?.ToJsonString(), templateId);
            }
            await Task.Delay(100);
        }
        return ("timeout", null, templateId);
    }
}
