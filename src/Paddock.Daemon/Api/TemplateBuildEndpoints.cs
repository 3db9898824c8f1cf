using System.Text.Json.Serialization;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Api;

/// <summary>
/// E2B's template build API (spec/openapi.yml), the routes the SDK's <c>Template.build</c> calls:
/// <c>POST /v3/templates</c>, <c>GET /templates/{id}/files/{hash}</c>, <c>POST /v2/templates/{id}/builds/{buildID}</c>,
/// <c>GET /templates/{id}/builds/{buildID}/status</c>, and <c>GET /templates/aliases/{alias}</c> (Template.exists).
/// </summary>
internal static class TemplateBuildEndpoints
{
    public static void MapTemplateBuildApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v3/templates", RequestAsync);
        app.MapGet("/templates/{templateID}/files/{hash}", FileUploadLink);
        app.MapPut("/templates/{templateID}/files/{hash}", UploadAsync);
        app.MapPost("/v2/templates/{templateID}/builds/{buildID}", StartAsync);
        app.MapGet("/templates/{templateID}/builds/{buildID}/status", Status);
        app.MapGet("/templates/aliases/{alias}", AliasAsync);
    }

    private static async Task<IResult> RequestAsync(HttpContext http, TemplateBuilds builds, Runtimes.IIsolationTiers tiers)
    {
        var request = await SandboxEndpoints.ReadBodyAsync(http, TemplateBuildJson.Default.BuildRequestV3, required: true);
        var isolation = TemplateImportEndpoints.TemplateIsolation(request!.Isolation, tiers);
        var name = request!.Name ?? request.Alias
            ?? throw ApiRequestException.BadRequest("a template name is required");
        var state = await Guard(() => builds.RequestAsync(http.GetCaller().TeamId, name, request.CpuCount, request.MemoryMB, http.RequestAborted, isolation));
        var names = new List<string> { name.Split(':')[0] };
        return Results.Json(new BuildRequestResponse(state.TemplateId, state.BuildId, false, names, names, request.Tags ?? []),
            TemplateBuildJson.Default.BuildRequestResponse, statusCode: StatusCodes.Status202Accepted);
    }

    /// <summary>
    /// Whether the team uploaded these COPY sources already; if not, where to PUT them: this same route on this daemon.
    /// The SDK sends the PUT with the headers given here and none of its own, so the caller's own API key is handed
    /// back to it (to the same caller that just sent it, over the same connection).
    /// </summary>
    private static IResult FileUploadLink(string templateID, string hash, HttpContext http, TemplateFiles files)
    {
        var team = http.GetCaller().TeamId;
        var present = GuardFiles(() => files.Exists(team, hash));
        if (present)
        {
            return Results.Json(new FileUploadResponse(true, null, null), TemplateBuildJson.Default.FileUploadResponse);
        }
        var url = $"{http.Request.Scheme}://{http.Request.Host}/templates/{Uri.EscapeDataString(templateID)}/files/{hash}";
        var headers = new Dictionary<string, string> { [ApiKeyAuthenticator.HeaderName] = http.Request.Headers[ApiKeyAuthenticator.HeaderName].ToString() };
        return Results.Json(new FileUploadResponse(false, url, headers), TemplateBuildJson.Default.FileUploadResponse);
    }

    private static async Task<IResult> UploadAsync(string templateID, string hash, HttpContext http, TemplateFiles files)
    {
        try
        {
            await files.ReceiveAsync(http.GetCaller().TeamId, hash, http.Request.Body, http.Request.ContentLength, http.RequestAborted);
        }
        catch (TemplateFileException ex)
        {
            throw new ApiRequestException(ex.StatusCode, ex.Message);
        }
        return Results.StatusCode(StatusCodes.Status201Created);
    }

    private static T GuardFiles<T>(Func<T> action)
    {
        try
        {
            return action();
        }
        catch (TemplateFileException ex)
        {
            throw new ApiRequestException(ex.StatusCode, ex.Message);
        }
    }

    private static async Task<IResult> StartAsync(string templateID, string buildID, HttpContext http, TemplateBuilds builds)
    {
        var body = await SandboxEndpoints.ReadBodyAsync(http, TemplateBuildJson.Default.BuildStartRequest, required: true);
        var spec = new BuildSpec(body!.FromImage, body.FromTemplate, body.Force ?? false,
            (body.Steps ?? []).Select(s => new BuildStep(s.Type ?? "", s.Args ?? [], s.FilesHash, s.Force ?? false)).ToList(),
            body.StartCmd, body.ReadyCmd);
        await Guard(async () =>
        {
            await builds.StartAsync(templateID, buildID, http.GetCaller().TeamId, spec, http.RequestAborted);
            return true;
        });
        return Results.StatusCode(StatusCodes.Status202Accepted);
    }

    private static IResult Status(string templateID, string buildID, HttpContext http, TemplateBuilds builds)
    {
        var state = builds.Find(templateID, buildID, http.GetCaller().TeamId)
            ?? throw new ApiRequestException(StatusCodes.Status404NotFound, $"build '{buildID}' of template '{templateID}' not found");
        var offset = 0;
        if (http.Request.Query["logsOffset"].ToString() is { Length: > 0 } text && (!int.TryParse(text, out offset) || offset < 0))
        {
            throw ApiRequestException.BadRequest($"invalid logsOffset '{text}': expected a non-negative integer");
        }
        // The status first, then the log: a client that sees "ready" or "error" has every line up to it.
        var status = state.Status;
        var lines = state.LogFrom(offset).Select(l => new BuildLogEntryResponse(l.Timestamp, l.Level, l.Message, l.Step)).ToList();
        var reason = status == "error" ? new BuildReasonResponse(state.FailureMessage ?? "the build failed", state.FailureStep) : null;
        return Results.Json(new BuildStatusResponse(templateID, buildID, status, lines.Select(l => $"[{l.Timestamp:O}] {l.Message}").ToList(), lines, reason),
            TemplateBuildJson.Default.BuildStatusResponse);
    }

    private static async Task<IResult> AliasAsync(string alias, HttpContext http, TemplateRegistry registry)
    {
        var team = http.GetCaller().TeamId;
        var found = (await registry.ListAsync(team, http.RequestAborted)).FirstOrDefault(t => t.TemplateId == alias || t.Names.Contains(alias, StringComparer.Ordinal))
            ?? throw new ApiRequestException(StatusCodes.Status404NotFound, $"no template named '{alias}'");
        return Results.Json(new AliasResponse(found.TemplateId, found.Public), TemplateBuildJson.Default.AliasResponse);
    }

    private static async Task<T> Guard<T>(Func<Task<T>> action)
    {
        try
        {
            return await action();
        }
        catch (TemplateBuildException ex)
        {
            throw new ApiRequestException(ex.StatusCode, ex.Message);
        }
    }
}

internal sealed record BuildRequestV3(
    [property: JsonPropertyName("name")] string? Name,
    [property: JsonPropertyName("alias")] string? Alias,
    [property: JsonPropertyName("tags")] List<string>? Tags,
    [property: JsonPropertyName("cpuCount")] int? CpuCount,
    [property: JsonPropertyName("memoryMB")] int? MemoryMB,
    [property: JsonPropertyName("isolation")] string? Isolation = null);

internal sealed record BuildRequestResponse(
    [property: JsonPropertyName("templateID")] string TemplateID,
    [property: JsonPropertyName("buildID")] string BuildID,
    [property: JsonPropertyName("public")] bool Public,
    [property: JsonPropertyName("aliases")] IReadOnlyList<string> Aliases,
    [property: JsonPropertyName("names")] IReadOnlyList<string> Names,
    [property: JsonPropertyName("tags")] IReadOnlyList<string> Tags);

internal sealed record FileUploadResponse(
    [property: JsonPropertyName("present")] bool Present,
    [property: JsonPropertyName("url"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Url,
    [property: JsonPropertyName("headers"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] Dictionary<string, string>? Headers);

internal sealed record BuildStepRequest(
    [property: JsonPropertyName("type")] string? Type,
    [property: JsonPropertyName("args")] List<string>? Args,
    [property: JsonPropertyName("filesHash")] string? FilesHash,
    [property: JsonPropertyName("force")] bool? Force);

internal sealed record BuildStartRequest(
    [property: JsonPropertyName("fromImage")] string? FromImage,
    [property: JsonPropertyName("fromTemplate")] string? FromTemplate,
    [property: JsonPropertyName("force")] bool? Force,
    [property: JsonPropertyName("steps")] List<BuildStepRequest>? Steps,
    [property: JsonPropertyName("startCmd")] string? StartCmd,
    [property: JsonPropertyName("readyCmd")] string? ReadyCmd);

internal sealed record BuildLogEntryResponse(
    [property: JsonPropertyName("timestamp")] DateTimeOffset Timestamp,
    [property: JsonPropertyName("level")] string Level,
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("step"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Step);

internal sealed record BuildReasonResponse(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("step"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Step);

internal sealed record BuildStatusResponse(
    [property: JsonPropertyName("templateID")] string TemplateID,
    [property: JsonPropertyName("buildID")] string BuildID,
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("logs")] IReadOnlyList<string> Logs,
    [property: JsonPropertyName("logEntries")] IReadOnlyList<BuildLogEntryResponse> LogEntries,
    [property: JsonPropertyName("reason"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] BuildReasonResponse? Reason);

internal sealed record AliasResponse(
    [property: JsonPropertyName("templateID")] string TemplateID,
    [property: JsonPropertyName("public")] bool Public);

[JsonSerializable(typeof(BuildRequestV3))]
[JsonSerializable(typeof(BuildRequestResponse))]
[JsonSerializable(typeof(FileUploadResponse))]
[JsonSerializable(typeof(BuildStartRequest))]
[JsonSerializable(typeof(BuildStatusResponse))]
[JsonSerializable(typeof(AliasResponse))]
internal sealed partial class TemplateBuildJson : JsonSerializerContext;
