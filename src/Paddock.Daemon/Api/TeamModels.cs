using System.Text.Json;
using System.Text.Json.Serialization;

namespace Paddock.Daemon.Api;

// Teams and API keys. The key shapes are E2B's (spec/openapi.yml: NewTeamAPIKey, UpdateTeamAPIKey, TeamAPIKey,
// CreatedTeamAPIKey, IdentifierMaskingDetails, Team); team limits and usage are paddock's additions.

/// <summary>E2B's NewTeamAPIKey and UpdateTeamAPIKey.</summary>
internal sealed class ApiKeyNameRequest
{
    [JsonPropertyName("name")] public string? Name { get; set; }
}

/// <summary>
/// paddock: POST /teams and PATCH /teams/{teamID}. A limit left out keeps its value (none, on a create); a limit set
/// to null is removed. JsonElement tells the two apart: Undefined when absent, Null when null.
/// </summary>
internal sealed class TeamRequest
{
    [JsonPropertyName("name")] public string? Name { get; set; }
    [JsonPropertyName("maxSandboxes")] public JsonElement MaxSandboxes { get; set; }
    [JsonPropertyName("maxCpus")] public JsonElement MaxCpus { get; set; }
    [JsonPropertyName("maxMemoryMB")] public JsonElement MaxMemoryMB { get; set; }

    /// <summary>The one isolation tier the team's sandboxes may run on ("gvisor"); null: any.</summary>
    [JsonPropertyName("isolation")] public JsonElement Isolation { get; set; }

    /// <summary>How many paused sandboxes the team may keep; null: the daemon's --max-paused-per-team.</summary>
    [JsonPropertyName("maxPausedSandboxes")] public JsonElement MaxPausedSandboxes { get; set; }
}

internal sealed record IdentifierMaskingDetailsResponse(
    [property: JsonPropertyName("prefix")] string Prefix,
    [property: JsonPropertyName("valueLength")] int ValueLength,
    [property: JsonPropertyName("maskedValuePrefix")] string MaskedValuePrefix,
    [property: JsonPropertyName("maskedValueSuffix")] string MaskedValueSuffix);

/// <summary>E2B's TeamAPIKey: GET /api-keys.</summary>
internal sealed record TeamApiKeyResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("mask")] IdentifierMaskingDetailsResponse Mask,
    [property: JsonPropertyName("createdAt")] DateTimeOffset CreatedAt,
    [property: JsonPropertyName("lastUsed")] DateTimeOffset? LastUsed);

/// <summary>E2B's CreatedTeamAPIKey: the only answer that ever holds the key itself.</summary>
internal sealed record CreatedTeamApiKeyResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("key")] string Key,
    [property: JsonPropertyName("mask")] IdentifierMaskingDetailsResponse Mask,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("createdAt")] DateTimeOffset CreatedAt);

internal sealed record TeamLimitsResponse(
    [property: JsonPropertyName("maxSandboxes")] int? MaxSandboxes,
    [property: JsonPropertyName("maxCpus")] int? MaxCpus,
    [property: JsonPropertyName("maxMemoryMB")] int? MaxMemoryMB,
    [property: JsonPropertyName("isolation")] string? Isolation,
    [property: JsonPropertyName("maxPausedSandboxes")] int? MaxPausedSandboxes);

internal sealed record TeamUsageResponse(
    [property: JsonPropertyName("sandboxes")] int Sandboxes,
    [property: JsonPropertyName("cpus")] int Cpus,
    [property: JsonPropertyName("memoryMB")] long MemoryMB,
    [property: JsonPropertyName("pausedSandboxes")] int PausedSandboxes);

/// <summary>
/// E2B's Team (GET /teams) plus paddock's fields. E2B's <c>apiKey</c> is always empty here: paddockd keeps only
/// hashes of keys, so it has none to give.
/// </summary>
internal sealed record TeamResponse(
    [property: JsonPropertyName("teamID")] string TeamId,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("apiKey")] string ApiKey,
    [property: JsonPropertyName("isDefault")] bool IsDefault,
    [property: JsonPropertyName("isAdmin")] bool IsAdmin,
    [property: JsonPropertyName("limits")] TeamLimitsResponse Limits,
    [property: JsonPropertyName("usage")] TeamUsageResponse Usage);
