using System.Text.Json.Serialization;

namespace Paddock.Daemon.Api;

/// <summary>All control-plane JSON, source-generated. Absent optional fields are omitted, as E2B's API does.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(NewSandboxRequest))]
[JsonSerializable(typeof(TimeoutRequest))]
[JsonSerializable(typeof(NetworkUpdateRequest))]
[JsonSerializable(typeof(ConnectRequest))]
[JsonSerializable(typeof(PauseRequest))]
[JsonSerializable(typeof(ForkRequest))]
[JsonSerializable(typeof(List<ForkResultResponse>))]
[JsonSerializable(typeof(SandboxResponse))]
[JsonSerializable(typeof(SandboxDetailResponse))]
[JsonSerializable(typeof(List<ListedSandboxResponse>))]
[JsonSerializable(typeof(List<SandboxMetricResponse>))]
[JsonSerializable(typeof(SandboxesWithMetricsResponse))]
[JsonSerializable(typeof(SandboxLogsResponse))]
[JsonSerializable(typeof(SandboxLogsV2Response))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(ProxyErrorResponse))]
[JsonSerializable(typeof(HealthResponse))]
[JsonSerializable(typeof(ApiKeyNameRequest))]
[JsonSerializable(typeof(TeamRequest))]
[JsonSerializable(typeof(List<TeamApiKeyResponse>))]
[JsonSerializable(typeof(CreatedTeamApiKeyResponse))]
[JsonSerializable(typeof(TeamResponse))]
[JsonSerializable(typeof(List<TeamResponse>))]
internal sealed partial class ApiJsonContext : JsonSerializerContext;
