using System.Text.Json.Serialization;

namespace Paddock.Client.Api;

// API keys (E2B's spec/openapi.yml: NewTeamAPIKey, TeamAPIKey, CreatedTeamAPIKey, IdentifierMaskingDetails) and teams
// (E2B's Team, plus paddockd's limits and usage).

internal sealed class ApiKeyNameDto
{
    [JsonPropertyName("name")] public required string Name { get; init; }
}

internal sealed class MaskDto
{
    [JsonPropertyName("prefix")] public string? Prefix { get; init; }
    [JsonPropertyName("valueLength")] public int ValueLength { get; init; }
    [JsonPropertyName("maskedValuePrefix")] public string? MaskedValuePrefix { get; init; }
    [JsonPropertyName("maskedValueSuffix")] public string? MaskedValueSuffix { get; init; }
}

internal sealed class TeamApiKeyDto
{
    [JsonPropertyName("id")] public string? Id { get; init; }
    [JsonPropertyName("key")] public string? Key { get; init; }
    [JsonPropertyName("name")] public string? Name { get; init; }
    [JsonPropertyName("mask")] public MaskDto? Mask { get; init; }
    [JsonPropertyName("createdAt")] public DateTimeOffset CreatedAt { get; init; }
    [JsonPropertyName("lastUsed")] public DateTimeOffset? LastUsed { get; init; }
}

/// <summary>POST /teams and PATCH /teams/{id}: every limit is sent, null meaning "no limit".</summary>
internal sealed class TeamRequestDto
{
    [JsonPropertyName("name"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Name { get; init; }
    [JsonPropertyName("maxSandboxes"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public int? MaxSandboxes { get; init; }
    [JsonPropertyName("maxCpus"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public int? MaxCpus { get; init; }
    [JsonPropertyName("maxMemoryMB"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public int? MaxMemoryMB { get; init; }
    [JsonPropertyName("isolation"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public string? Isolation { get; init; }
    [JsonPropertyName("maxPausedSandboxes"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public int? MaxPausedSandboxes { get; init; }
}

internal sealed class TeamLimitsDto
{
    [JsonPropertyName("maxSandboxes")] public int? MaxSandboxes { get; init; }
    [JsonPropertyName("maxCpus")] public int? MaxCpus { get; init; }
    [JsonPropertyName("maxMemoryMB")] public int? MaxMemoryMB { get; init; }
    [JsonPropertyName("isolation")] public string? Isolation { get; init; }
    [JsonPropertyName("maxPausedSandboxes")] public int? MaxPausedSandboxes { get; init; }
}

internal sealed class TeamUsageDto
{
    [JsonPropertyName("sandboxes")] public int Sandboxes { get; init; }
    [JsonPropertyName("cpus")] public int Cpus { get; init; }
    [JsonPropertyName("memoryMB")] public long MemoryMB { get; init; }
    [JsonPropertyName("pausedSandboxes")] public int PausedSandboxes { get; init; }
}

internal sealed class TeamDto
{
    [JsonPropertyName("teamID")] public string? TeamId { get; init; }
    [JsonPropertyName("name")] public string? Name { get; init; }
    [JsonPropertyName("isDefault")] public bool IsDefault { get; init; }
    [JsonPropertyName("isAdmin")] public bool IsAdmin { get; init; }
    [JsonPropertyName("limits")] public TeamLimitsDto? Limits { get; init; }
    [JsonPropertyName("usage")] public TeamUsageDto? Usage { get; init; }
}
