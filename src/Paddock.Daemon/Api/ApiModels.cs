using System.Text.Json;
using System.Text.Json.Serialization;

namespace Paddock.Daemon.Api;

// The wire shapes of E2B's control plane (spec/openapi.yml of e2b-dev/E2B). Names are the spec's, casing included.

/// <summary>POST /sandboxes and POST /v2/sandboxes (E2B's NewSandbox, plus optional paddock fields for limits and isolation).</summary>
internal sealed class NewSandboxRequest
{
    [JsonPropertyName("templateID")] public string? TemplateId { get; set; }
    [JsonPropertyName("timeout")] public int? Timeout { get; set; }
    [JsonPropertyName("autoPause")] public bool? AutoPause { get; set; }
    [JsonPropertyName("autoPauseMemory")] public bool? AutoPauseMemory { get; set; }
    [JsonPropertyName("autoResume")] public AutoResumeConfig? AutoResume { get; set; }
    [JsonPropertyName("secure")] public bool? Secure { get; set; }
    [JsonPropertyName("allow_internet_access")] public bool? AllowInternetAccess { get; set; }
    [JsonPropertyName("network")] public NetworkConfig? Network { get; set; }
    [JsonPropertyName("metadata")] public Dictionary<string, string?>? Metadata { get; set; }
    [JsonPropertyName("envVars")] public Dictionary<string, string?>? EnvVars { get; set; }
    [JsonPropertyName("mcp")] public JsonElement? Mcp { get; set; }
    [JsonPropertyName("iam")] public JsonElement? Iam { get; set; }
    [JsonPropertyName("volumeMounts")] public JsonElement? VolumeMounts { get; set; }

    /// <summary>paddock: CPUs for this sandbox (default from --cpus).</summary>
    [JsonPropertyName("cpuCount")] public int? CpuCount { get; set; }

    /// <summary>paddock: memory in MiB for this sandbox (default from --memory-mb).</summary>
    [JsonPropertyName("memoryMB")] public int? MemoryMB { get; set; }

    /// <summary>paddock: writable disk in MiB for this sandbox (default from --disk-mb).</summary>
    [JsonPropertyName("diskSizeMB")] public int? DiskSizeMB { get; set; }

    /// <summary>
    /// paddock: the isolation tier ("runc", "gvisor"); default: the team's tier, else the template's, else --isolation.
    /// </summary>
    [JsonPropertyName("isolation")] public string? Isolation { get; set; }
}

internal sealed class AutoResumeConfig
{
    [JsonPropertyName("enabled")] public bool? Enabled { get; set; }
}

internal sealed class NetworkConfig
{
    [JsonPropertyName("allowPublicTraffic")] public bool? AllowPublicTraffic { get; set; }
    [JsonPropertyName("allowOut")] public JsonElement? AllowOut { get; set; }
    [JsonPropertyName("denyOut")] public JsonElement? DenyOut { get; set; }
    [JsonPropertyName("egressProxy")] public JsonElement? EgressProxy { get; set; }
    [JsonPropertyName("rules")] public JsonElement? Rules { get; set; }
    [JsonPropertyName("maskRequestHost")] public JsonElement? MaskRequestHost { get; set; }
    [JsonPropertyName("httpsPorts")] public JsonElement? HttpsPorts { get; set; }
}

/// <summary>
/// PUT /sandboxes/{id}/network (E2B's SandboxNetworkUpdateConfig): replaces the egress rules; an omitted field is cleared.
/// </summary>
internal sealed class NetworkUpdateRequest
{
    [JsonPropertyName("allowOut")] public List<string>? AllowOut { get; set; }
    [JsonPropertyName("denyOut")] public List<string>? DenyOut { get; set; }
    [JsonPropertyName("allow_internet_access")] public bool? AllowInternetAccess { get; set; }
    [JsonPropertyName("egressProxy")] public JsonElement? EgressProxy { get; set; }
    [JsonPropertyName("rules")] public JsonElement? Rules { get; set; }
}

/// <summary>POST /sandboxes/{id}/timeout.</summary>
internal sealed class TimeoutRequest
{
    [JsonPropertyName("timeout")] public int? Timeout { get; set; }
}

/// <summary>POST /sandboxes/{id}/pause (E2B's PauseSandbox): memory false pauses the filesystem only; absent: what the tier keeps.</summary>
internal sealed class PauseRequest
{
    [JsonPropertyName("memory")] public bool? Memory { get; set; }
}

/// <summary>POST /sandboxes/{id}/connect and /v2/sandboxes/{id}/connect.</summary>
internal sealed class ConnectRequest
{
    [JsonPropertyName("timeout")] public int? Timeout { get; set; }
    [JsonPropertyName("memory")] public bool? Memory { get; set; }
}

/// <summary>POST /sandboxes/{id}/fork (E2B's SandboxForkRequest).</summary>
internal sealed class ForkRequest
{
    [JsonPropertyName("timeout")] public int? Timeout { get; set; }
    [JsonPropertyName("count")] public int? Count { get; set; }
}

/// <summary>E2B's SandboxForkResult: exactly one of the two is set.</summary>
internal sealed record ForkResultResponse(
    [property: JsonPropertyName("sandbox")] SandboxResponse? Sandbox,
    [property: JsonPropertyName("error")] ErrorResponse? Error);

/// <summary>E2B's Sandbox: the answer to a create or a connect.</summary>
internal sealed record SandboxResponse(
    [property: JsonPropertyName("templateID")] string TemplateId,
    [property: JsonPropertyName("sandboxID")] string SandboxId,
    [property: JsonPropertyName("alias")] string? Alias,
    [property: JsonPropertyName("clientID")] string ClientId,
    [property: JsonPropertyName("envdVersion")] string EnvdVersion,
    [property: JsonPropertyName("envdAccessToken")] string? EnvdAccessToken,
    [property: JsonPropertyName("trafficAccessToken")] string? TrafficAccessToken,
    [property: JsonPropertyName("domain")] string Domain);

internal sealed record LifecycleResponse(
    [property: JsonPropertyName("autoResume")] bool AutoResume,
    [property: JsonPropertyName("onTimeout")] string OnTimeout);

internal sealed record NetworkResponse(
    [property: JsonPropertyName("allowPublicTraffic")] bool AllowPublicTraffic);

/// <summary>E2B's SandboxDetail: GET /sandboxes/{id}.</summary>
internal sealed record SandboxDetailResponse(
    [property: JsonPropertyName("templateID")] string TemplateId,
    [property: JsonPropertyName("alias")] string? Alias,
    [property: JsonPropertyName("sandboxID")] string SandboxId,
    [property: JsonPropertyName("clientID")] string ClientId,
    [property: JsonPropertyName("startedAt")] DateTimeOffset StartedAt,
    [property: JsonPropertyName("endAt")] DateTimeOffset EndAt,
    [property: JsonPropertyName("envdVersion")] string EnvdVersion,
    [property: JsonPropertyName("envdAccessToken")] string? EnvdAccessToken,
    [property: JsonPropertyName("allowInternetAccess")] bool? AllowInternetAccess,
    [property: JsonPropertyName("domain")] string Domain,
    [property: JsonPropertyName("cpuCount")] int CpuCount,
    [property: JsonPropertyName("memoryMB")] int MemoryMB,
    [property: JsonPropertyName("diskSizeMB")] int DiskSizeMB,
    [property: JsonPropertyName("metadata")] IReadOnlyDictionary<string, string> Metadata,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("network")] NetworkResponse Network,
    [property: JsonPropertyName("lifecycle")] LifecycleResponse Lifecycle,
    [property: JsonPropertyName("volumeMounts")] IReadOnlyList<VolumeMountResponse> VolumeMounts,
    [property: JsonPropertyName("isolation")] string Isolation);

internal sealed record VolumeMountResponse(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("path")] string Path);

/// <summary>E2B's ListedSandbox: GET /sandboxes and GET /v2/sandboxes.</summary>
internal sealed record ListedSandboxResponse(
    [property: JsonPropertyName("templateID")] string TemplateId,
    [property: JsonPropertyName("alias")] string? Alias,
    [property: JsonPropertyName("sandboxID")] string SandboxId,
    [property: JsonPropertyName("clientID")] string ClientId,
    [property: JsonPropertyName("startedAt")] DateTimeOffset StartedAt,
    [property: JsonPropertyName("endAt")] DateTimeOffset EndAt,
    [property: JsonPropertyName("cpuCount")] int CpuCount,
    [property: JsonPropertyName("memoryMB")] int MemoryMB,
    [property: JsonPropertyName("diskSizeMB")] int DiskSizeMB,
    [property: JsonPropertyName("metadata")] IReadOnlyDictionary<string, string> Metadata,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("envdVersion")] string EnvdVersion,
    [property: JsonPropertyName("volumeMounts")] IReadOnlyList<VolumeMountResponse> VolumeMounts,
    [property: JsonPropertyName("isolation")] string Isolation);

/// <summary>E2B's SandboxMetric.</summary>
internal sealed record SandboxMetricResponse(
    [property: JsonPropertyName("timestamp")] DateTimeOffset Timestamp,
    [property: JsonPropertyName("timestampUnix")] long TimestampUnix,
    [property: JsonPropertyName("cpuCount")] int CpuCount,
    [property: JsonPropertyName("cpuUsedPct")] double CpuUsedPct,
    [property: JsonPropertyName("memUsed")] long MemUsed,
    [property: JsonPropertyName("memTotal")] long MemTotal,
    [property: JsonPropertyName("memCache")] long MemCache,
    [property: JsonPropertyName("diskUsed")] long DiskUsed,
    [property: JsonPropertyName("diskTotal")] long DiskTotal);

/// <summary>E2B's SandboxesWithMetrics: GET /sandboxes/metrics.</summary>
internal sealed record SandboxesWithMetricsResponse(
    [property: JsonPropertyName("sandboxes")] IReadOnlyDictionary<string, SandboxMetricResponse> Sandboxes);

internal sealed record SandboxLogResponse(
    [property: JsonPropertyName("timestamp")] DateTimeOffset Timestamp,
    [property: JsonPropertyName("line")] string Line);

internal sealed record SandboxLogEntryResponse(
    [property: JsonPropertyName("timestamp")] DateTimeOffset Timestamp,
    [property: JsonPropertyName("level")] string Level,
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("fields")] IReadOnlyDictionary<string, string> Fields);

/// <summary>E2B's SandboxLogs: GET /sandboxes/{id}/logs.</summary>
internal sealed record SandboxLogsResponse(
    [property: JsonPropertyName("logs")] IReadOnlyList<SandboxLogResponse> Logs,
    [property: JsonPropertyName("logEntries")] IReadOnlyList<SandboxLogEntryResponse> LogEntries);

/// <summary>E2B's SandboxLogsV2Response: GET /v2/sandboxes/{id}/logs.</summary>
internal sealed record SandboxLogsV2Response(
    [property: JsonPropertyName("logs")] IReadOnlyList<SandboxLogEntryResponse> Logs);

/// <summary>E2B's Error: every non-2xx answer of the control plane.</summary>
internal sealed record ErrorResponse(
    [property: JsonPropertyName("code")] int Code,
    [property: JsonPropertyName("message")] string Message);

/// <summary>The proxy's answer when it cannot reach a sandbox (E2B's client-proxy adds the id).</summary>
internal sealed record ProxyErrorResponse(
    [property: JsonPropertyName("code")] int Code,
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("sandboxId")] string SandboxId,
    [property: JsonPropertyName("port")] int? Port);

internal sealed record HealthResponse(
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("runtime")] string Runtime,
    [property: JsonPropertyName("sandboxes")] int Sandboxes);
