using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Paddock.Client.Http;

namespace Paddock.Client.Api;

/// <summary>E2B's template build routes (spec/openapi.yml): request, file upload links, start, status with logs.</summary>
internal sealed partial class ApiClient
{
    /// <summary>POST /v3/templates: a build of the template <paramref name="name"/> (a new one, or a rebuild of the team's template of that name).</summary>
    public Task<BuildRequestResponseDto> RequestBuildAsync(string name, int? cpuCount, int? memoryMB, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Post, "v3/templates",
            new StringContent(JsonSerializer.Serialize(new BuildRequestDto { Name = name, CpuCount = cpuCount, MemoryMB = memoryMB }, TemplateBuildJson.Default.BuildRequestDto), Encoding.UTF8, "application/json"),
            TemplateBuildJson.Default.BuildRequestResponseDto, sandboxId: null, cancellationToken);

    /// <summary>GET /templates/{id}/files/{hash}: whether the sources are uploaded already, else where to PUT them.</summary>
    public Task<FileUploadLinkDto> GetFileUploadLinkAsync(string templateId, string hash, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Get, $"templates/{Escape(templateId)}/files/{Escape(hash)}", null, TemplateBuildJson.Default.FileUploadLinkDto, sandboxId: null, cancellationToken);

    /// <summary>PUTs the archive at <paramref name="path"/> to the upload link, with exactly the headers the link came with.</summary>
    public async Task UploadAsync(FileUploadLinkDto link, string path, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var uri = new Uri(link.Url ?? throw new SandboxException("the server gave no upload address for the COPY sources"));
        using var deadline = HttpTransport.StartDeadline(timeout, cancellationToken);
        try
        {
            await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
            using var request = new HttpRequestMessage(HttpMethod.Put, uri) { Content = new StreamContent(file) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/gzip");
            request.Content.Headers.ContentLength = file.Length;
            foreach (var (name, value) in link.Headers ?? [])
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token).ConfigureAwait(false);
            await ThrowIfFailed(response, null, deadline.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (HttpTransport.IsTransportFailure(ex))
        {
            throw HttpTransport.Translate(ex, uri, cancellationToken, deadline, "uploading COPY sources");
        }
    }

    /// <summary>POST /v2/templates/{id}/builds/{buildID}: starts the build with these steps.</summary>
    public Task StartBuildAsync(string templateId, string buildId, BuildStartDto body, CancellationToken cancellationToken) =>
        SendAsync<object>(HttpMethod.Post, $"v2/templates/{Escape(templateId)}/builds/{Escape(buildId)}",
            new StringContent(JsonSerializer.Serialize(body, TemplateBuildJson.Default.BuildStartDto), Encoding.UTF8, "application/json"),
            null, sandboxId: null, cancellationToken);

    /// <summary>GET /templates/{id}/builds/{buildID}/status: the status and the log lines from <paramref name="logsOffset"/> on.</summary>
    public Task<BuildStatusDto> GetBuildStatusAsync(string templateId, string buildId, int logsOffset, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Get, $"templates/{Escape(templateId)}/builds/{Escape(buildId)}/status?logsOffset={logsOffset}", null,
            TemplateBuildJson.Default.BuildStatusDto, sandboxId: null, cancellationToken);
}

internal sealed class BuildRequestDto
{
    [JsonPropertyName("name")] public string? Name { get; init; }
    [JsonPropertyName("cpuCount"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? CpuCount { get; init; }
    [JsonPropertyName("memoryMB"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? MemoryMB { get; init; }
}

internal sealed class BuildRequestResponseDto
{
    [JsonPropertyName("templateID")] public string? TemplateId { get; init; }
    [JsonPropertyName("buildID")] public string? BuildId { get; init; }
}

internal sealed class FileUploadLinkDto
{
    [JsonPropertyName("present")] public bool Present { get; init; }
    [JsonPropertyName("url")] public string? Url { get; init; }
    [JsonPropertyName("headers")] public Dictionary<string, string>? Headers { get; init; }
}

internal sealed class BuildStepDto
{
    [JsonPropertyName("type")] public required string Type { get; init; }
    [JsonPropertyName("args")] public required List<string> Args { get; init; }
    [JsonPropertyName("filesHash"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? FilesHash { get; init; }
    [JsonPropertyName("force")] public bool Force { get; init; }
}

internal sealed class BuildStartDto
{
    [JsonPropertyName("fromImage"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? FromImage { get; init; }
    [JsonPropertyName("fromTemplate"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? FromTemplate { get; init; }
    [JsonPropertyName("force")] public bool Force { get; init; }
    [JsonPropertyName("steps")] public required List<BuildStepDto> Steps { get; init; }
    [JsonPropertyName("startCmd"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? StartCmd { get; init; }
    [JsonPropertyName("readyCmd"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? ReadyCmd { get; init; }
}

internal sealed class BuildLogEntryDto
{
    [JsonPropertyName("timestamp")] public DateTimeOffset Timestamp { get; init; }
    [JsonPropertyName("level")] public string? Level { get; init; }
    [JsonPropertyName("message")] public string? Message { get; init; }
    [JsonPropertyName("step")] public string? Step { get; init; }
}

internal sealed class BuildReasonDto
{
    [JsonPropertyName("message")] public string? Message { get; init; }
    [JsonPropertyName("step")] public string? Step { get; init; }
}

internal sealed class BuildStatusDto
{
    [JsonPropertyName("status")] public string? Status { get; init; }
    [JsonPropertyName("logEntries")] public List<BuildLogEntryDto>? LogEntries { get; init; }
    [JsonPropertyName("reason")] public BuildReasonDto? Reason { get; init; }
}

[JsonSerializable(typeof(BuildRequestDto))]
[JsonSerializable(typeof(BuildRequestResponseDto))]
[JsonSerializable(typeof(FileUploadLinkDto))]
[JsonSerializable(typeof(BuildStartDto))]
[JsonSerializable(typeof(BuildStatusDto))]
internal sealed partial class TemplateBuildJson : JsonSerializerContext;
