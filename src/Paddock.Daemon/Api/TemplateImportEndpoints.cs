using System.Text.Json.Serialization;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Templates.Images;

namespace Paddock.Daemon.Api;

/// <summary>
/// <c>POST /templates/import?name=NAME</c>: an image archive as the request body (a tarred OCI image layout, or
/// <c>docker save</c> output of either form; <c>application/x-tar</c>, or gzip-compressed as <c>application/gzip</c>)
/// becomes a template of the caller's team named NAME (a former template of that name gives it up). E2B has no such
/// route; this one follows its style (X-API-Key, <c>{code, message}</c> errors) and answers 201 with the template
/// in E2B's field names plus what the import kept of the image's config.
/// </summary>
internal static class TemplateImportEndpoints
{
    private static readonly string[] ContentTypes = ["application/x-tar", "application/tar", "application/gzip", "application/x-gzip", "application/octet-stream"];

    public static void MapTemplateImportApi(this IEndpointRouteBuilder app) => app.MapPost("/templates/import", ImportAsync);

    private static async Task<IResult> ImportAsync(HttpContext http, ImageImporter importer, Runtimes.IIsolationTiers tiers)
    {
        var isolation = TemplateIsolation(http.Request.Query["isolation"].ToString(), tiers);
        var name = http.Request.Query["name"].ToString();
        if (name.Length == 0)
        {
            throw ApiRequestException.BadRequest("a template name is required: POST /templates/import?name=NAME");
        }
        var type = http.Request.ContentType?.Split(';')[0].Trim();
        if (type is not null && !ContentTypes.Contains(type, StringComparer.OrdinalIgnoreCase))
        {
            throw new ApiRequestException(StatusCodes.Status415UnsupportedMediaType,
                $"unsupported content type '{type}': send the image archive as application/x-tar (or application/gzip when compressed)");
        }
        if (http.Request.ContentLength > importer.MaxBytes)
        {
            throw new ApiRequestException(StatusCodes.Status413PayloadTooLarge,
                $"the archive of {http.Request.ContentLength} bytes is larger than this host's image limit of {importer.MaxBytes} bytes");
        }
        ImportedImage imported;
        try
        {
            imported = await importer.ImportArchiveAsync(http.Request.Body, http.GetCaller().TeamId, name, http.RequestAborted, isolation);
        }
        catch (ImageImportException ex)
        {
            throw new ApiRequestException(ex.StatusCode, ex.Message);
        }
        var t = imported.Template;
        return Results.Json(new ImportResponse(t.TemplateId, t.Names, t.SizeBytes, imported.ImageLayers, t.DefaultUser, t.Workdir,
            t.EnvVars, imported.Entrypoint, imported.Cmd, imported.Notes), ImportJson.Default.ImportResponse, statusCode: StatusCodes.Status201Created);
    }

    /// <summary>
    /// A template's default tier as a build or import asks for it (paddock's <c>isolation</c>): null when empty, a known
    /// tier's name, else a 400. A tier this host cannot run yet may still be named; its sandboxes then get the 503.
    /// </summary>
    internal static string? TemplateIsolation(string? requested, Runtimes.IIsolationTiers tiers) =>
        string.IsNullOrWhiteSpace(requested) ? null
            : tiers.IsKnown(requested.Trim().ToLowerInvariant()) ? requested.Trim().ToLowerInvariant()
            : throw ApiRequestException.BadRequest($"unknown isolation '{requested}': this daemon has {string.Join(", ", tiers.Names)}");
}

/// <summary>An import's answer: the template, and the image config's Entrypoint and Cmd, which templates do not run.</summary>
internal sealed record ImportResponse(
    [property: JsonPropertyName("templateID")] string TemplateID,
    [property: JsonPropertyName("names")] IReadOnlyList<string> Names,
    [property: JsonPropertyName("sizeBytes")] long SizeBytes,
    [property: JsonPropertyName("imageLayers")] int ImageLayers,
    [property: JsonPropertyName("user"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? User,
    [property: JsonPropertyName("workdir"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Workdir,
    [property: JsonPropertyName("envs")] IReadOnlyDictionary<string, string> Envs,
    [property: JsonPropertyName("entrypoint")] IReadOnlyList<string> Entrypoint,
    [property: JsonPropertyName("cmd")] IReadOnlyList<string> Cmd,
    [property: JsonPropertyName("notes")] IReadOnlyList<string> Notes);

[JsonSerializable(typeof(ImportResponse))]
internal sealed partial class ImportJson : JsonSerializerContext;
