using System.Text.Json.Serialization;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Api;

/// <summary>
/// GET /templates (E2B's spec/openapi.yml, an array of <c>Template</c>): the built-in recipes, built or not, and every
/// built template. Added for `paddock template ls` and the SDK's Templates.ListAsync.
/// </summary>
internal static class TemplateEndpoints
{
    public static void MapTemplateApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/templates", (IServiceProvider services, DaemonOptions options) =>
        {
            // Hosts without a template store (tests with fixed templates) list nothing rather than fail.
            var store = services.GetService<TemplateStore>();
            var built = store?.List() ?? [];
            var names = built.Select(t => t.Name).Concat(store?.RecipeNames ?? []).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal);
            var templates = names.Select(name =>
            {
                var latest = built.Where(t => t.Name == name).MaxBy(t => t.BuiltAt);
                return new TemplateResponse(
                    TemplateID: name,
                    BuildID: latest?.Version ?? "",
                    CpuCount: options.DefaultCpuCount,
                    MemoryMB: options.DefaultMemoryMB,
                    DiskSizeMB: options.DefaultDiskSizeMB,
                    Public: true,
                    Aliases: [name],
                    Names: [name],
                    CreatedAt: latest?.BuiltAt,
                    UpdatedAt: latest?.BuiltAt,
                    LastSpawnedAt: null,
                    SpawnCount: 0,
                    BuildCount: built.Count(t => t.Name == name),
                    EnvdVersion: SandboxEndpoints.EnvdVersion,
                    // "waiting": a recipe not built yet; the first sandbox that asks for it builds it.
                    BuildStatus: latest is null ? "waiting" : "ready");
            }).ToList();
            return Results.Json(templates, TemplateJsonContext.Default.ListTemplateResponse);
        });
    }
}

/// <summary>E2B's <c>Template</c> schema.</summary>
internal sealed record TemplateResponse(
    [property: JsonPropertyName("templateID")] string TemplateID,
    [property: JsonPropertyName("buildID")] string BuildID,
    [property: JsonPropertyName("cpuCount")] int CpuCount,
    [property: JsonPropertyName("memoryMB")] int MemoryMB,
    [property: JsonPropertyName("diskSizeMB")] int DiskSizeMB,
    [property: JsonPropertyName("public")] bool Public,
    [property: JsonPropertyName("aliases")] IReadOnlyList<string> Aliases,
    [property: JsonPropertyName("names")] IReadOnlyList<string> Names,
    [property: JsonPropertyName("createdAt")] DateTimeOffset? CreatedAt,
    [property: JsonPropertyName("updatedAt")] DateTimeOffset? UpdatedAt,
    [property: JsonPropertyName("lastSpawnedAt")] DateTimeOffset? LastSpawnedAt,
    [property: JsonPropertyName("spawnCount")] long SpawnCount,
    [property: JsonPropertyName("buildCount")] int BuildCount,
    [property: JsonPropertyName("envdVersion")] string EnvdVersion,
    [property: JsonPropertyName("buildStatus")] string BuildStatus);

[JsonSerializable(typeof(List<TemplateResponse>))]
internal sealed partial class TemplateJsonContext : JsonSerializerContext;
