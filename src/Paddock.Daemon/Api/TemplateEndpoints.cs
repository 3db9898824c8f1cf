using System.Text.Json.Serialization;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Api;

/// <summary>
/// Templates and filesystem snapshots (E2B's spec/openapi.yml): <c>GET /templates</c>, <c>GET</c>/<c>DELETE
/// /templates/{id}</c>, <c>POST /sandboxes/{id}/snapshots</c> and <c>GET /snapshots</c>. A team sees its own
/// templates and the public built-ins. Responses carry E2B's fields plus <c>sizeBytes</c>, <c>layers</c>,
/// <c>kind</c>, <c>parentID</c> and <c>memory</c>, which E2B's schema does not have and its SDKs ignore.
/// </summary>
internal static class TemplateEndpoints
{
    public static void MapTemplateApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/templates", ListAsync);
        app.MapGet("/templates/{templateID}", GetAsync);
        app.MapDelete("/templates/{templateID}", DeleteAsync);
        app.MapPost("/sandboxes/{sandboxID}/snapshots", SnapshotAsync);
        app.MapGet("/snapshots", ListSnapshotsAsync);
        app.MapTemplateBuildApi();
    }

    private static async Task<IResult> ListAsync(HttpContext http, TemplateRegistry registry, IServiceProvider services, DaemonOptions options)
    {
        var team = http.GetCaller().TeamId;
        var registered = await registry.ListAsync(team, http.RequestAborted);
        var templates = registered.Select(t => ToTemplate(t, options)).ToList();
        // Recipes not built yet (hosts with a template store): the first sandbox that asks for one builds it.
        var recipes = services.GetService<TemplateStore>()?.RecipeNames ?? [];
        foreach (var name in recipes.Order(StringComparer.Ordinal))
        {
            if (!registered.Any(t => t.TemplateId == name || t.Names.Contains(name, StringComparer.Ordinal)))
            {
                templates.Add(new TemplateResponse(name, "", options.DefaultCpuCount, options.DefaultMemoryMB, options.DefaultDiskSizeMB,
                    true, [name], [name], null, null, null, 0, 0, SandboxEndpoints.EnvdVersion, "waiting", 0, 0, "builtin", null, false));
            }
        }
        return Results.Json(templates, TemplateJsonContext.Default.ListTemplateResponse);
    }

    private static async Task<IResult> GetAsync(string templateID, HttpContext http, TemplateRegistry registry, DaemonOptions options)
    {
        var team = http.GetCaller().TeamId;
        var record = (await registry.ListAsync(team, http.RequestAborted))
            .FirstOrDefault(t => t.TemplateId == templateID || t.Names.Contains(templateID, StringComparer.Ordinal))
            ?? throw new ApiRequestException(StatusCodes.Status404NotFound, $"template '{templateID}' not found");
        var t = ToTemplate(record, options);
        var build = new TemplateBuildResponse(record.TemplateId, "ready", record.CreatedAt, record.CreatedAt, t.CpuCount, t.MemoryMB, t.DiskSizeMB, t.EnvdVersion);
        return Results.Json(new TemplateWithBuildsResponse(t.TemplateID, t.Public, t.Aliases, t.Names, t.CreatedAt, t.UpdatedAt, null, 0, [build],
            t.SizeBytes, t.Layers, t.Kind, t.ParentID, t.Memory), TemplateJsonContext.Default.TemplateWithBuildsResponse);
    }

    private static async Task<IResult> DeleteAsync(string templateID, HttpContext http, TemplateRegistry registry)
    {
        var outcome = await registry.DeleteAsync(templateID, http.GetCaller().TeamId, http.RequestAborted);
        return outcome.Status switch
        {
            TemplateDeleteStatus.Deleted => Results.NoContent(),
            TemplateDeleteStatus.NotFound => throw new ApiRequestException(StatusCodes.Status404NotFound, $"template '{templateID}' not found"),
            TemplateDeleteStatus.Builtin => throw new ApiRequestException(StatusCodes.Status403Forbidden,
                $"template '{templateID}' is a public template of this host; only its own team's templates can be deleted"),
            TemplateDeleteStatus.HasDependents => throw new ApiRequestException(StatusCodes.Status409Conflict,
                $"template '{outcome.TemplateId}' cannot be deleted: templates are built on it ({string.Join(", ", outcome.Blockers)}); delete those first"),
            TemplateDeleteStatus.InUse => throw new ApiRequestException(StatusCodes.Status409Conflict,
                $"template '{outcome.TemplateId}' cannot be deleted while sandboxes run from it ({string.Join(", ", outcome.Blockers)}); kill them first"),
            _ => throw new InvalidOperationException($"unknown delete outcome {outcome.Status}"),
        };
    }

    private static async Task<IResult> SnapshotAsync(string sandboxID, HttpContext http, SandboxManager manager, TemplateRegistry registry)
    {
        var request = await SandboxEndpoints.ReadBodyAsync(http, TemplateJsonContext.Default.SnapshotRequest, required: false);
        var sandbox = manager.GetRunning(sandboxID);
        if (sandbox.TeamId != http.GetCaller().TeamId)
        {
            // Another team's sandbox answers exactly as an unknown one (SandboxEndpoints: no existence oracle).
            throw new UnknownSandboxException(sandboxID);
        }
        TemplateRecord record;
        try
        {
            record = await registry.SnapshotAsync(sandbox, http.GetCaller().TeamId, request?.Name, http.RequestAborted);
        }
        catch (TemplateNameException ex)
        {
            throw ApiRequestException.BadRequest(ex.Message);
        }
        catch (Runtimes.SandboxNotFoundException)
        {
            throw new UnknownSandboxException(sandboxID, "it stopped before its filesystem was copied");
        }
        return Results.Json(ToSnapshot(record), TemplateJsonContext.Default.SnapshotResponse, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> ListSnapshotsAsync(HttpContext http, TemplateRegistry registry)
    {
        var q = http.Request.Query;
        var sandboxId = q["sandboxID"].ToString();
        var name = q["name"].ToString();
        var limit = int.MaxValue;
        if (q["limit"].ToString() is { Length: > 0 } limitText && (!int.TryParse(limitText, out limit) || limit < 1))
        {
            throw ApiRequestException.BadRequest($"invalid limit '{limitText}': expected a positive integer");
        }
        var team = http.GetCaller().TeamId;
        // Only the team's own: public built-ins are templates, not snapshots. Newest first, as E2B lists.
        var snapshots = (await registry.ListAsync(team, http.RequestAborted))
            .Where(t => t.Kind == TemplateKind.Snapshot && t.TeamId == team)
            .Where(t => sandboxId.Length == 0 || t.SourceSandboxId == sandboxId)
            .Where(t => name.Length == 0 || t.TemplateId == name || t.Names.Contains(name, StringComparer.Ordinal))
            .OrderByDescending(t => t.CreatedAt)
            .Take(limit)
            .Select(ToSnapshot)
            .ToList();
        return Results.Json(snapshots, TemplateJsonContext.Default.ListSnapshotResponse);
    }

    private static SnapshotResponse ToSnapshot(TemplateRecord t) => new(t.TemplateId, t.Names, t.MemoryImage is not null);

    private static TemplateResponse ToTemplate(TemplateRecord t, DaemonOptions options) => new(
        TemplateID: t.TemplateId,
        BuildID: t.TemplateId,
        CpuCount: options.DefaultCpuCount,
        MemoryMB: options.DefaultMemoryMB,
        DiskSizeMB: options.DefaultDiskSizeMB,
        Public: t.Public,
        Aliases: t.Names,
        Names: t.Names,
        CreatedAt: t.CreatedAt,
        UpdatedAt: t.CreatedAt,
        LastSpawnedAt: null,
        SpawnCount: 0,
        BuildCount: 1,
        EnvdVersion: SandboxEndpoints.EnvdVersion,
        BuildStatus: "ready",
        SizeBytes: t.SizeBytes,
        Layers: t.Layers.Count,
        Kind: t.Kind.ToString().ToLowerInvariant(),
        ParentID: t.ParentId,
        Memory: t.MemoryImage is not null);
}

/// <summary>E2B's <c>Template</c> schema, plus the size of the template's own layer, its layer count, kind and parent.</summary>
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
    [property: JsonPropertyName("buildStatus")] string BuildStatus,
    [property: JsonPropertyName("sizeBytes")] long SizeBytes,
    [property: JsonPropertyName("layers")] int Layers,
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("parentID")] string? ParentID,
    [property: JsonPropertyName("memory")] bool Memory);

/// <summary>E2B's <c>TemplateWithBuilds</c> (GET /templates/{id}), with the same additions as <see cref="TemplateResponse"/>.</summary>
internal sealed record TemplateWithBuildsResponse(
    [property: JsonPropertyName("templateID")] string TemplateID,
    [property: JsonPropertyName("public")] bool Public,
    [property: JsonPropertyName("aliases")] IReadOnlyList<string> Aliases,
    [property: JsonPropertyName("names")] IReadOnlyList<string> Names,
    [property: JsonPropertyName("createdAt")] DateTimeOffset? CreatedAt,
    [property: JsonPropertyName("updatedAt")] DateTimeOffset? UpdatedAt,
    [property: JsonPropertyName("lastSpawnedAt")] DateTimeOffset? LastSpawnedAt,
    [property: JsonPropertyName("spawnCount")] long SpawnCount,
    [property: JsonPropertyName("builds")] IReadOnlyList<TemplateBuildResponse> Builds,
    [property: JsonPropertyName("sizeBytes")] long SizeBytes,
    [property: JsonPropertyName("layers")] int Layers,
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("parentID")] string? ParentID,
    [property: JsonPropertyName("memory")] bool Memory);

/// <summary>E2B's <c>TemplateBuild</c>: one per template here (a template is never rebuilt in place).</summary>
internal sealed record TemplateBuildResponse(
    [property: JsonPropertyName("buildID")] string BuildID,
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("createdAt")] DateTimeOffset CreatedAt,
    [property: JsonPropertyName("updatedAt")] DateTimeOffset UpdatedAt,
    [property: JsonPropertyName("cpuCount")] int CpuCount,
    [property: JsonPropertyName("memoryMB")] int MemoryMB,
    [property: JsonPropertyName("diskSizeMB")] int DiskSizeMB,
    [property: JsonPropertyName("envdVersion")] string EnvdVersion);

/// <summary>E2B's <c>SandboxSnapshotRequest</c>.</summary>
internal sealed record SnapshotRequest([property: JsonPropertyName("name")] string? Name);

/// <summary>
/// E2B's <c>SnapshotInfo</c>. The id is the bare template id (E2B may append ":tag"; the SDK passes it back as is).
/// <c>memory</c> (not E2B's; its SDKs ignore it): whether the snapshot kept memory too, so that a sandbox made from it
/// starts with the snapshot's processes running (the gVisor tier) rather than with its files only.
/// </summary>
internal sealed record SnapshotResponse(
    [property: JsonPropertyName("snapshotID")] string SnapshotID,
    [property: JsonPropertyName("names")] IReadOnlyList<string> Names,
    [property: JsonPropertyName("memory")] bool Memory);

[JsonSerializable(typeof(List<TemplateResponse>))]
[JsonSerializable(typeof(TemplateWithBuildsResponse))]
[JsonSerializable(typeof(SnapshotRequest))]
[JsonSerializable(typeof(SnapshotResponse))]
[JsonSerializable(typeof(List<SnapshotResponse>))]
internal sealed partial class TemplateJsonContext : JsonSerializerContext;
