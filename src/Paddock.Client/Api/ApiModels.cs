using System.Text.Json.Serialization;

namespace Paddock.Client.Api;

// Wire shapes of E2B's control plane (spec/openapi.yml of e2b-dev/E2B): names as the spec spells them.

internal sealed class NewSandboxDto
{
    [JsonPropertyName("templateID")] public required string TemplateId { get; init; }
    [JsonPropertyName("timeout")] public int? Timeout { get; init; }
    [JsonPropertyName("autoPause")] public bool? AutoPause { get; init; }
    [JsonPropertyName("autoPauseMemory"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public bool? AutoPauseMemory { get; init; }
    [JsonPropertyName("autoResume"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public AutoResumeDto? AutoResume { get; init; }
    [JsonPropertyName("secure")] public bool? Secure { get; init; }
    [JsonPropertyName("allow_internet_access")] public bool? AllowInternetAccess { get; init; }
    [JsonPropertyName("metadata")] public IReadOnlyDictionary<string, string>? Metadata { get; init; }
    [JsonPropertyName("envVars")] public IReadOnlyDictionary<string, string>? EnvVars { get; init; }
    [JsonPropertyName("network"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public NetworkDto? Network { get; init; }

    /// <summary>paddock's extension; left out when null, so E2B's own service never sees it.</summary>
    [JsonPropertyName("isolation"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Isolation { get; init; }

    /// <summary>E2B's <c>volumeMounts</c>: left out when null.</summary>
    [JsonPropertyName("volumeMounts"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<VolumeMountDto>? VolumeMounts { get; init; }
}

/// <summary>E2B's SandboxVolumeMount.</summary>
internal sealed class VolumeMountDto
{
    [JsonPropertyName("name")] public required string Name { get; init; }
    [JsonPropertyName("path")] public required string Path { get; init; }
}

/// <summary>E2B's NewVolume, plus paddockd's size.</summary>
internal sealed class NewVolumeDto
{
    [JsonPropertyName("name")] public required string Name { get; init; }
    [JsonPropertyName("sizeMB"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? SizeMB { get; init; }
}

/// <summary>E2B's Volume and VolumeAndToken (the token only in the latter), plus paddockd's size.</summary>
internal sealed class VolumeDto
{
    [JsonPropertyName("volumeID")] public string? VolumeId { get; init; }
    [JsonPropertyName("name")] public string? Name { get; init; }
    [JsonPropertyName("token")] public string? Token { get; init; }
    [JsonPropertyName("sizeMB")] public long? SizeMB { get; init; }
}

/// <summary>E2B's SandboxAutoResumeConfig.</summary>
internal sealed class AutoResumeDto
{
    [JsonPropertyName("enabled")] public required bool Enabled { get; init; }
}

/// <summary>E2B's SandboxNetworkConfig: egress allow and deny lists (CIDRs, addresses or domain names).</summary>
internal sealed class NetworkDto
{
    [JsonPropertyName("allowOut")] public IReadOnlyList<string>? AllowOut { get; init; }
    [JsonPropertyName("denyOut")] public IReadOnlyList<string>? DenyOut { get; init; }
}

internal sealed class TimeoutDto
{
    [JsonPropertyName("timeout")] public required int Timeout { get; init; }
}

/// <summary>POST /sandboxes/{id}/pause: memory false pauses the filesystem only; null lets the sandbox's tier keep what it can.</summary>
internal sealed class PauseDto
{
    [JsonPropertyName("memory")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? Memory { get; init; }
}

/// <summary>POST /sandboxes/{id}/fork (E2B's SandboxForkRequest).</summary>
internal sealed class ForkDto
{
    [JsonPropertyName("count")] public required int Count { get; init; }

    [JsonPropertyName("timeout")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? Timeout { get; init; }
}

/// <summary>One entry of a fork's answer (E2B's SandboxForkResult): the copy, or why it did not start.</summary>
internal sealed class ForkResultDto
{
    [JsonPropertyName("sandbox")] public SandboxDto? Sandbox { get; init; }
    [JsonPropertyName("error")] public ErrorDto? Error { get; init; }
}

internal sealed class SandboxDto
{
    [JsonPropertyName("templateID")] public string? TemplateId { get; init; }
    [JsonPropertyName("sandboxID")] public string? SandboxId { get; init; }
    [JsonPropertyName("alias")] public string? Alias { get; init; }
    [JsonPropertyName("clientID")] public string? ClientId { get; init; }
    [JsonPropertyName("envdVersion")] public string? EnvdVersion { get; init; }
    [JsonPropertyName("envdAccessToken")] public string? EnvdAccessToken { get; init; }
    [JsonPropertyName("trafficAccessToken")] public string? TrafficAccessToken { get; init; }
    [JsonPropertyName("domain")] public string? Domain { get; init; }
}

/// <summary>SandboxDetail and ListedSandbox (the latter is the former without the token and network fields).</summary>
internal sealed class SandboxDetailDto
{
    [JsonPropertyName("templateID")] public string? TemplateId { get; init; }
    [JsonPropertyName("alias")] public string? Alias { get; init; }
    [JsonPropertyName("sandboxID")] public string? SandboxId { get; init; }
    [JsonPropertyName("clientID")] public string? ClientId { get; init; }
    [JsonPropertyName("startedAt")] public DateTimeOffset? StartedAt { get; init; }
    [JsonPropertyName("endAt")] public DateTimeOffset? EndAt { get; init; }
    [JsonPropertyName("envdVersion")] public string? EnvdVersion { get; init; }
    [JsonPropertyName("envdAccessToken")] public string? EnvdAccessToken { get; init; }
    [JsonPropertyName("domain")] public string? Domain { get; init; }
    [JsonPropertyName("cpuCount")] public int CpuCount { get; init; }
    [JsonPropertyName("memoryMB")] public int MemoryMB { get; init; }
    [JsonPropertyName("diskSizeMB")] public int DiskSizeMB { get; init; }
    [JsonPropertyName("metadata")] public Dictionary<string, string>? Metadata { get; init; }
    [JsonPropertyName("state")] public string? State { get; init; }
    [JsonPropertyName("isolation")] public string? Isolation { get; init; }
}

internal sealed class SandboxMetricDto
{
    [JsonPropertyName("timestamp")] public DateTimeOffset? Timestamp { get; init; }
    [JsonPropertyName("timestampUnix")] public long? TimestampUnix { get; init; }
    [JsonPropertyName("cpuCount")] public int CpuCount { get; init; }
    [JsonPropertyName("cpuUsedPct")] public double CpuUsedPct { get; init; }
    [JsonPropertyName("memUsed")] public long MemUsed { get; init; }
    [JsonPropertyName("memTotal")] public long MemTotal { get; init; }
    [JsonPropertyName("memCache")] public long MemCache { get; init; }
    [JsonPropertyName("diskUsed")] public long DiskUsed { get; init; }
    [JsonPropertyName("diskTotal")] public long DiskTotal { get; init; }
}

internal sealed class SandboxLogsV2Dto
{
    [JsonPropertyName("logs")] public List<SandboxLogEntryDto>? Logs { get; init; }
}

internal sealed class SandboxLogsV1Dto
{
    [JsonPropertyName("logs")] public List<SandboxLogLineDto>? Logs { get; init; }
    [JsonPropertyName("logEntries")] public List<SandboxLogEntryDto>? LogEntries { get; init; }
}

internal sealed class SandboxLogLineDto
{
    [JsonPropertyName("timestamp")] public DateTimeOffset Timestamp { get; init; }
    [JsonPropertyName("line")] public string? Line { get; init; }
}

internal sealed class SandboxLogEntryDto
{
    [JsonPropertyName("timestamp")] public DateTimeOffset Timestamp { get; init; }
    [JsonPropertyName("message")] public string? Message { get; init; }
    [JsonPropertyName("level")] public string? Level { get; init; }
    [JsonPropertyName("fields")] public Dictionary<string, string>? Fields { get; init; }
}

internal sealed class TemplateDto
{
    [JsonPropertyName("templateID")] public string? TemplateId { get; init; }
    [JsonPropertyName("buildID")] public string? BuildId { get; init; }
    [JsonPropertyName("cpuCount")] public int CpuCount { get; init; }
    [JsonPropertyName("memoryMB")] public int MemoryMB { get; init; }
    [JsonPropertyName("diskSizeMB")] public int DiskSizeMB { get; init; }
    [JsonPropertyName("public")] public bool Public { get; init; }
    [JsonPropertyName("aliases")] public List<string>? Aliases { get; init; }
    [JsonPropertyName("names")] public List<string>? Names { get; init; }
    [JsonPropertyName("createdAt")] public DateTimeOffset? CreatedAt { get; init; }
    [JsonPropertyName("updatedAt")] public DateTimeOffset? UpdatedAt { get; init; }
    [JsonPropertyName("lastSpawnedAt")] public DateTimeOffset? LastSpawnedAt { get; init; }
    [JsonPropertyName("spawnCount")] public long SpawnCount { get; init; }
    [JsonPropertyName("buildCount")] public int BuildCount { get; init; }
    [JsonPropertyName("envdVersion")] public string? EnvdVersion { get; init; }
    [JsonPropertyName("buildStatus")] public string? BuildStatus { get; init; }
}

/// <summary>E2B's <c>SandboxSnapshotRequest</c>.</summary>
internal sealed class SnapshotRequestDto
{
    [JsonPropertyName("name")] public string? Name { get; init; }
}

/// <summary>E2B's <c>SnapshotInfo</c>: the id to create sandboxes from.</summary>
internal sealed class SnapshotDto
{
    [JsonPropertyName("snapshotID")] public string? SnapshotId { get; init; }
    [JsonPropertyName("names")] public List<string>? Names { get; init; }
}

internal sealed class ErrorDto
{
    [JsonPropertyName("code")] public int? Code { get; init; }
    [JsonPropertyName("message")] public string? Message { get; init; }
}

/// <summary>The entry written by <c>POST /files</c> (envd.yaml, EntryInfo).</summary>
internal sealed class WriteInfoDto
{
    [JsonPropertyName("name")] public string? Name { get; init; }
    [JsonPropertyName("type")] public string? Type { get; init; }
    [JsonPropertyName("path")] public string? Path { get; init; }
}

// Source-generated serialisation: no reflection, so the SDK stays trimmable and AOT-compatible.
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, PropertyNameCaseInsensitive = false)]
[JsonSerializable(typeof(NewSandboxDto))]
[JsonSerializable(typeof(TimeoutDto))]
[JsonSerializable(typeof(PauseDto))]
[JsonSerializable(typeof(ForkDto))]
[JsonSerializable(typeof(List<ForkResultDto>))]
[JsonSerializable(typeof(SandboxDto))]
[JsonSerializable(typeof(SandboxDetailDto))]
[JsonSerializable(typeof(List<SandboxDetailDto>))]
[JsonSerializable(typeof(List<SandboxMetricDto>))]
[JsonSerializable(typeof(SandboxLogsV2Dto))]
[JsonSerializable(typeof(SandboxLogsV1Dto))]
[JsonSerializable(typeof(List<TemplateDto>))]
[JsonSerializable(typeof(SnapshotRequestDto))]
[JsonSerializable(typeof(SnapshotDto))]
[JsonSerializable(typeof(ErrorDto))]
[JsonSerializable(typeof(List<WriteInfoDto>))]
[JsonSerializable(typeof(ApiKeyNameDto))]
[JsonSerializable(typeof(TeamApiKeyDto))]
[JsonSerializable(typeof(List<TeamApiKeyDto>))]
[JsonSerializable(typeof(TeamRequestDto))]
[JsonSerializable(typeof(TeamDto))]
[JsonSerializable(typeof(List<TeamDto>))]
[JsonSerializable(typeof(SandboxAuditPage))]
[JsonSerializable(typeof(NewVolumeDto))]
[JsonSerializable(typeof(VolumeDto))]
[JsonSerializable(typeof(List<VolumeDto>))]
internal sealed partial class ApiJson : JsonSerializerContext
{
}
