using System.Text.Json;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Store;
using Paddock.Daemon.Teams;

namespace Paddock.Daemon.Api;

/// <summary>
/// API keys in E2B's style (spec/openapi.yml: /api-keys, /api-keys/{apiKeyID}, /admin/teams/{teamID}/api-keys) and
/// teams: E2B's GET /teams, plus paddock's POST /teams and PATCH /teams/{teamID} for admin keys to make teams and set
/// their limits. A key acts for its own team; only keys of an admin team reach another team.
/// </summary>
internal static class TeamEndpoints
{
    public const int MaxKeyNameLength = 100;
    public const int MaxTeamNameLength = 64;

    /// <summary>Far above any host, low enough that totals cannot overflow.</summary>
    public const int MaxLimitValue = 1_000_000;

    public static void MapTeamApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api-keys", (HttpContext http, TeamDirectory teams) => ListKeysAsync(http.GetCaller().TeamId, teams, http));
        app.MapPost("/api-keys", (HttpContext http, TeamDirectory teams) => CreateKeyAsync(http.GetCaller().TeamId, teams, http));
        app.MapPatch("/api-keys/{apiKeyID}", RenameKeyAsync);
        app.MapDelete("/api-keys/{apiKeyID}", (string apiKeyID, HttpContext http, TeamDirectory teams) => RevokeKeyAsync(http.GetCaller().TeamId, apiKeyID, teams, http));

        app.MapGet("/admin/teams/{teamID}/api-keys", (string teamID, HttpContext http, TeamDirectory teams) => ListKeysAsync(AdminTarget(http, teams, teamID), teams, http));
        app.MapPost("/admin/teams/{teamID}/api-keys", (string teamID, HttpContext http, TeamDirectory teams) => CreateKeyAsync(AdminTarget(http, teams, teamID), teams, http));
        app.MapDelete("/admin/teams/{teamID}/api-keys/{apiKeyID}", (string teamID, string apiKeyID, HttpContext http, TeamDirectory teams) =>
            RevokeKeyAsync(AdminTarget(http, teams, teamID), apiKeyID, teams, http));

        app.MapGet("/teams", ListTeams);
        app.MapPost("/teams", CreateTeamAsync);
        app.MapPatch("/teams/{teamID}", UpdateTeamAsync);
    }

    private static async Task<IResult> ListKeysAsync(string teamId, TeamDirectory teams, HttpContext http)
    {
        var keys = await teams.ListKeysAsync(teamId, http.RequestAborted);
        return Results.Json(keys.Select(k => new TeamApiKeyResponse(k.KeyId, k.Name, Mask(k.KeyMask), k.CreatedAt, k.LastUsedAt)).ToList(),
            ApiJsonContext.Default.ListTeamApiKeyResponse);
    }

    private static async Task<IResult> CreateKeyAsync(string teamId, TeamDirectory teams, HttpContext http)
    {
        var request = await SandboxEndpoints.ReadBodyAsync(http, ApiJsonContext.Default.ApiKeyNameRequest, required: true);
        var name = ValidateKeyName(request!.Name);
        var (record, key) = await teams.CreateKeyAsync(teamId, name, http.RequestAborted);
        // The key leaves the daemon this once; only its hash is kept.
        return Results.Json(new CreatedTeamApiKeyResponse(record.KeyId, key, Mask(record.KeyMask), record.Name, record.CreatedAt),
            ApiJsonContext.Default.CreatedTeamApiKeyResponse, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> RenameKeyAsync(string apiKeyID, HttpContext http, TeamDirectory teams)
    {
        var request = await SandboxEndpoints.ReadBodyAsync(http, ApiJsonContext.Default.ApiKeyNameRequest, required: true);
        var name = ValidateKeyName(request!.Name);
        if (!IsKeyId(apiKeyID) || !await teams.RenameKeyAsync(http.GetCaller().TeamId, apiKeyID, name, http.RequestAborted))
        {
            throw KeyNotFound(apiKeyID);
        }
        return Results.Ok();
    }

    private static async Task<IResult> RevokeKeyAsync(string teamId, string apiKeyID, TeamDirectory teams, HttpContext http)
    {
        if (!IsKeyId(apiKeyID) || !await teams.RevokeKeyAsync(teamId, apiKeyID, http.RequestAborted))
        {
            throw KeyNotFound(apiKeyID);
        }
        return Results.NoContent();
    }

    private static IResult ListTeams(HttpContext http, TeamDirectory teams, SandboxManager manager)
    {
        var caller = http.GetCaller();
        var visible = teams.Teams.Where(t => caller.IsAdmin || t.TeamId == caller.TeamId);
        return Results.Json(visible.Select(t => ToResponse(t, caller, manager)).ToList(), ApiJsonContext.Default.ListTeamResponse);
    }

    private static async Task<IResult> CreateTeamAsync(HttpContext http, TeamDirectory teams, SandboxManager manager, IIsolationTiers tiers)
    {
        RequireAdmin(http);
        var request = await SandboxEndpoints.ReadBodyAsync(http, ApiJsonContext.Default.TeamRequest, required: true);
        var name = ValidateTeamName(request!.Name) ?? throw ApiRequestException.BadRequest("name is required");
        var limits = ApplyLimits(TeamLimits.None, request, tiers);
        var team = await teams.CreateTeamAsync(name, limits, http.RequestAborted);
        return Results.Json(ToResponse(team, http.GetCaller(), manager), ApiJsonContext.Default.TeamResponse, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> UpdateTeamAsync(string teamID, HttpContext http, TeamDirectory teams, SandboxManager manager, IIsolationTiers tiers)
    {
        RequireAdmin(http);
        var request = await SandboxEndpoints.ReadBodyAsync(http, ApiJsonContext.Default.TeamRequest, required: true);
        var name = ValidateTeamName(request!.Name);
        // Validated before the change so that a bad value changes nothing.
        ApplyLimits(TeamLimits.None, request, tiers);
        var team = await teams.UpdateTeamAsync(teamID, name, current => ApplyLimits(current, request, tiers), http.RequestAborted)
            ?? throw new UnknownTeamException(teamID);
        return Results.Json(ToResponse(team, http.GetCaller(), manager), ApiJsonContext.Default.TeamResponse);
    }

    private static void RequireAdmin(HttpContext http)
    {
        var caller = http.GetCaller();
        if (!caller.IsAdmin)
        {
            throw new ApiRequestException(StatusCodes.Status403Forbidden,
                $"only keys of an admin team may manage teams; this key belongs to team '{caller.TeamId}'");
        }
    }

    /// <summary>The team an admin route names; checked for admin before the team, so the route tells non-admins nothing.</summary>
    private static string AdminTarget(HttpContext http, TeamDirectory teams, string teamId)
    {
        RequireAdmin(http);
        return teams.Find(teamId) is null ? throw new UnknownTeamException(teamId) : teamId;
    }

    private static TeamResponse ToResponse(TeamRecord t, Caller caller, SandboxManager manager)
    {
        var usage = manager.UsageOf(t.TeamId);
        return new TeamResponse(t.TeamId, t.Name, "", t.TeamId == caller.TeamId, t.IsAdmin,
            new TeamLimitsResponse(t.Limits.MaxSandboxes, t.Limits.MaxCpus, t.Limits.MaxMemoryMB, t.Limits.Isolation, t.Limits.MaxPausedSandboxes),
            new TeamUsageResponse(usage.Sandboxes, usage.Cpus, usage.MemoryMB, manager.PausedCountOf(t.TeamId)));
    }

    /// <summary>The stored mask is the prefix, an ellipsis and the last four characters (<see cref="ApiKeys.Mask"/>).</summary>
    private static IdentifierMaskingDetailsResponse Mask(string mask) =>
        mask.StartsWith(ApiKeys.Prefix, StringComparison.Ordinal) && mask.Length >= ApiKeys.Prefix.Length + 4
            ? new(ApiKeys.Prefix, ApiKeys.Generate().Length - ApiKeys.Prefix.Length, "", mask[^4..])
            : new("", 0, "", "");

    private static bool IsKeyId(string id) => Guid.TryParseExact(id, "D", out _);

    private static UnknownKeyException KeyNotFound(string id) => new(id);

    private static string ValidateKeyName(string? name)
    {
        var trimmed = name?.Trim();
        if (string.IsNullOrEmpty(trimmed))
        {
            throw ApiRequestException.BadRequest("name is required");
        }
        if (trimmed.Length > MaxKeyNameLength)
        {
            throw ApiRequestException.BadRequest($"name is longer than {MaxKeyNameLength} characters");
        }
        if (trimmed.Any(char.IsControl))
        {
            throw ApiRequestException.BadRequest("name must not contain control characters");
        }
        return trimmed;
    }

    /// <summary>Null when absent; team names appear in messages and tables, so they are plain.</summary>
    private static string? ValidateTeamName(string? name)
    {
        if (name is null)
        {
            return null;
        }
        if (name.Length is 0 or > MaxTeamNameLength || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
        {
            throw ApiRequestException.BadRequest($"invalid team name '{name}': 1 to {MaxTeamNameLength} ASCII letters, digits, '-', '_' or '.'");
        }
        return name;
    }

    private static TeamLimits ApplyLimits(TeamLimits current, TeamRequest request, IIsolationTiers tiers) => new(
        Limit(request.MaxSandboxes, "maxSandboxes", current.MaxSandboxes),
        Limit(request.MaxCpus, "maxCpus", current.MaxCpus),
        Limit(request.MaxMemoryMB, "maxMemoryMB", current.MaxMemoryMB),
        Tier(request.Isolation, current.Isolation, tiers),
        Limit(request.MaxPausedSandboxes, "maxPausedSandboxes", current.MaxPausedSandboxes));

    /// <summary>A known tier's name binds the team to it; null lifts the binding. Unavailable tiers may be named (a host may get it later).</summary>
    private static string? Tier(JsonElement value, string? current, IIsolationTiers tiers) => value.ValueKind switch
    {
        JsonValueKind.Undefined => current,
        JsonValueKind.Null => null,
        JsonValueKind.String when tiers.IsKnown(value.GetString()!) => value.GetString(),
        _ => throw ApiRequestException.BadRequest($"isolation must be one of {string.Join(", ", tiers.Names)}, or null for any"),
    };

    private static int? Limit(JsonElement value, string name, int? current) => value.ValueKind switch
    {
        JsonValueKind.Undefined => current,
        JsonValueKind.Null => null,
        JsonValueKind.Number when value.TryGetInt32(out var n) && n is >= 0 and <= MaxLimitValue => n,
        _ => throw ApiRequestException.BadRequest($"{name} must be an integer from 0 to {MaxLimitValue}, or null for no limit"),
    };
}

/// <summary>The caller's team has no such key (or it was revoked): the API's 404.</summary>
internal sealed class UnknownKeyException(string keyId) : Exception($"API key '{keyId}' not found");
