using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// Which isolation tier a new sandbox runs on. In order: what the create asked for; else the tier its team is bound to;
/// else its template's default; else the daemon's. A team bound to a tier (an admin's setting, <c>isolation</c> on
/// the team) may not ask for another one; its binding also overrides a template's default, which is a preference, not
/// a request. Tier names are opaque here: the known ones come from <see cref="IIsolationTiers"/>.
/// </summary>
internal static class IsolationChoice
{
    /// <summary>
    /// The tier's name. Throws <see cref="UnknownIsolationException"/> (400) for a name no tier has,
    /// <see cref="IsolationForbiddenException"/> (403) when the team may not use the tier asked for, and
    /// <see cref="RuntimeUnavailableException"/> (503) when the tier cannot run on this host, with what to install.
    /// </summary>
    public static string Resolve(IIsolationTiers tiers, string? requested, string? teamTier, string? templateTier)
    {
        if (requested is not null && !tiers.IsKnown(requested))
        {
            throw new UnknownIsolationException(requested, tiers.Names);
        }
        if (requested is not null && teamTier is not null && requested != teamTier)
        {
            throw new IsolationForbiddenException($"this team's sandboxes run on the {teamTier} isolation tier only; it cannot ask for {requested}");
        }
        var chosen = requested ?? teamTier ?? (templateTier is not null && tiers.IsKnown(templateTier) ? templateTier : null) ?? tiers.DefaultTier;
        if (tiers.UnavailableReason(chosen) is { } reason)
        {
            throw new RuntimeUnavailableException($"the {chosen} isolation tier is not available on this host: {reason}");
        }
        return chosen;
    }
}

/// <summary>An isolation tier name that this daemon does not know (the API's 400).</summary>
internal sealed class UnknownIsolationException(string name, IEnumerable<string> known)
    : Exception($"unknown isolation '{name}': this daemon has {string.Join(", ", known)}");

/// <summary>The caller's team may not use the isolation tier asked for (the API's 403).</summary>
internal sealed class IsolationForbiddenException(string message) : Exception(message);
