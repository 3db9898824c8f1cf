namespace Paddock.Client.Api;

// API keys and teams: E2B's /api-keys and /teams, and paddockd's admin routes (/admin/teams/{id}/api-keys, POST /teams,
// PATCH /teams/{id}).
internal sealed partial class ApiClient
{
    public Task<List<TeamApiKeyDto>> ListApiKeysAsync(string? teamId, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Get, KeysPath(teamId), null, ApiJson.Default.ListTeamApiKeyDto, sandboxId: null, cancellationToken);

    public Task<TeamApiKeyDto> CreateApiKeyAsync(string? teamId, string name, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Post, KeysPath(teamId), Json(new ApiKeyNameDto { Name = name }, ApiJson.Default.ApiKeyNameDto), ApiJson.Default.TeamApiKeyDto, sandboxId: null, cancellationToken);

    public Task RenameApiKeyAsync(string keyId, string name, CancellationToken cancellationToken) =>
        SendAsync<object>(HttpMethod.Patch, $"api-keys/{Escape(keyId)}", Json(new ApiKeyNameDto { Name = name }, ApiJson.Default.ApiKeyNameDto), null, sandboxId: null, cancellationToken);

    public Task RevokeApiKeyAsync(string? teamId, string keyId, CancellationToken cancellationToken) =>
        SendAsync<object>(HttpMethod.Delete, $"{KeysPath(teamId)}/{Escape(keyId)}", null, null, sandboxId: null, cancellationToken);

    public Task<List<TeamDto>> ListTeamsAsync(CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Get, "teams", null, ApiJson.Default.ListTeamDto, sandboxId: null, cancellationToken);

    public Task<TeamDto> CreateTeamAsync(TeamRequestDto request, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Post, "teams", Json(request, ApiJson.Default.TeamRequestDto), ApiJson.Default.TeamDto, sandboxId: null, cancellationToken);

    public Task<TeamDto> UpdateTeamAsync(string teamId, TeamRequestDto request, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Patch, $"teams/{Escape(teamId)}", Json(request, ApiJson.Default.TeamRequestDto), ApiJson.Default.TeamDto, sandboxId: null, cancellationToken);

    private static string KeysPath(string? teamId) => teamId is null ? "api-keys" : $"admin/teams/{Escape(teamId)}/api-keys";
}
