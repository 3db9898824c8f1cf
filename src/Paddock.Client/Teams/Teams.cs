using Paddock.Client.Api;

namespace Paddock.Client;

/// <summary>
/// Teams (E2B's <c>GET /teams</c>, and paddockd's <c>POST /teams</c> and <c>PATCH /teams/{id}</c>). Every key sees its own
/// team; keys of an admin team see all teams and may create them and change their limits.
/// </summary>
public static class Teams
{
    /// <summary>The teams the key may see: its own, or all of them for an admin key.</summary>
    public static async Task<IReadOnlyList<TeamInfo>> ListAsync(ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        return (await api.ListTeamsAsync(cancellationToken).ConfigureAwait(false)).Select(ToInfo).ToArray();
    }

    /// <summary>Makes a team (admin keys only); <paramref name="limits"/> null means no team limits.</summary>
    public static async Task<TeamInfo> CreateAsync(string name, TeamLimits? limits = null, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        limits ??= new TeamLimits();
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        return ToInfo(await api.CreateTeamAsync(Request(name, limits), cancellationToken).ConfigureAwait(false));
    }

    /// <summary>Replaces a team's limits, all four (admin keys only): a null limit is removed. Running sandboxes are not touched.</summary>
    public static async Task<TeamInfo> SetLimitsAsync(string teamId, TeamLimits limits, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(teamId);
        ArgumentNullException.ThrowIfNull(limits);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        return ToInfo(await api.UpdateTeamAsync(teamId, Request(null, limits), cancellationToken).ConfigureAwait(false));
    }

    private static TeamRequestDto Request(string? name, TeamLimits limits) => new()
    {
        Name = name,
        MaxSandboxes = limits.MaxSandboxes,
        MaxCpus = limits.MaxCpus,
        MaxMemoryMB = limits.MaxMemoryMB,
        Isolation = limits.Isolation,
        MaxPausedSandboxes = limits.MaxPausedSandboxes,
    };

    private static TeamInfo ToInfo(TeamDto t) => new()
    {
        TeamId = t.TeamId ?? "",
        Name = t.Name ?? "",
        IsCallersTeam = t.IsDefault,
        IsAdmin = t.IsAdmin,
        Limits = new TeamLimits(t.Limits?.MaxSandboxes, t.Limits?.MaxCpus, t.Limits?.MaxMemoryMB, t.Limits?.Isolation, t.Limits?.MaxPausedSandboxes),
        Usage = new TeamUsage(t.Usage?.Sandboxes ?? 0, t.Usage?.Cpus ?? 0, t.Usage?.MemoryMB ?? 0, t.Usage?.PausedSandboxes ?? 0),
    };
}
