using System.Text.Json.Serialization;

namespace Paddock.Daemon.Dashboard;

internal sealed class SignInRequest
{
    [JsonPropertyName("apiKey")]
    public string? ApiKey { get; init; }
}

internal sealed record SessionResponse(
    [property: JsonPropertyName("teamID")] string TeamId,
    [property: JsonPropertyName("admin")] bool Admin,
    [property: JsonPropertyName("keyMask")] string KeyMask,
    [property: JsonPropertyName("csrf")] string Csrf);

/// <summary>
/// One row of the sandboxes page: what the E2B list gives, plus the team, the tier and the usage now; in a cluster, the
/// node that runs it (absent on a single daemon).
/// </summary>
internal sealed record DashboardSandbox(
    [property: JsonPropertyName("sandboxID")] string SandboxId,
    [property: JsonPropertyName("teamID")] string TeamId,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("isolation")] string Isolation,
    [property: JsonPropertyName("templateID")] string TemplateId,
    [property: JsonPropertyName("alias")] string? Alias,
    [property: JsonPropertyName("metadata")] IReadOnlyDictionary<string, string> Metadata,
    [property: JsonPropertyName("startedAt")] DateTimeOffset StartedAt,
    [property: JsonPropertyName("endAt")] DateTimeOffset EndAt,
    [property: JsonPropertyName("cpuCount")] int CpuCount,
    [property: JsonPropertyName("memoryMB")] int MemoryMB,
    [property: JsonPropertyName("cpuUsedPct")] double? CpuUsedPct,
    [property: JsonPropertyName("memUsed")] long? MemUsed,
    [property: JsonPropertyName("ownTeam")] bool OwnTeam,
    [property: JsonPropertyName("nodeID")] string? NodeId);

internal sealed class ExtendRequest
{
    /// <summary>Seconds from now, as E2B's <c>POST /sandboxes/{id}/timeout</c>.</summary>
    [JsonPropertyName("timeout")]
    public int? Timeout { get; init; }
}

internal sealed record FileEntryResponse(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("path")] string Path,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("permissions")] string Permissions);

internal sealed record HostResponse(
    [property: JsonPropertyName("maxSandboxes")] int MaxSandboxes,
    [property: JsonPropertyName("reserved")] int Reserved,
    [property: JsonPropertyName("running")] int Running,
    [property: JsonPropertyName("frozen")] int Frozen,
    [property: JsonPropertyName("pools")] IReadOnlyDictionary<string, int> Pools,
    [property: JsonPropertyName("defaultTier")] string DefaultTier,
    [property: JsonPropertyName("tiers")] IReadOnlyList<string> Tiers,
    [property: JsonPropertyName("nodeID")] string? NodeId);

/// <summary>A control message of the terminal's WebSocket (text frames; bytes of the terminal go in binary frames).</summary>
internal sealed class TerminalControl
{
    [JsonPropertyName("type")]
    public string? Type { get; init; }

    [JsonPropertyName("cols")]
    public int Cols { get; init; }

    [JsonPropertyName("rows")]
    public int Rows { get; init; }
}

internal sealed record TerminalExit(
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("exitCode")] int? ExitCode,
    [property: JsonPropertyName("message")] string? Message);

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SignInRequest))]
[JsonSerializable(typeof(SessionResponse))]
[JsonSerializable(typeof(List<DashboardSandbox>))]
[JsonSerializable(typeof(ExtendRequest))]
[JsonSerializable(typeof(List<FileEntryResponse>))]
[JsonSerializable(typeof(FileEntryResponse))]
[JsonSerializable(typeof(HostResponse))]
[JsonSerializable(typeof(TerminalControl))]
[JsonSerializable(typeof(TerminalExit))]
internal sealed partial class DashboardJsonContext : JsonSerializerContext;
