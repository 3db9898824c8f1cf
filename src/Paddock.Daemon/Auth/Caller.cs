namespace Paddock.Daemon.Auth;

/// <summary>
/// Who a control-plane request comes from, as its API key says: the team that owns what the request creates and the
/// only team whose sandboxes and templates it may see. Set by <see cref="ApiKeyMiddleware"/> once the key is checked.
/// </summary>
internal sealed record Caller(string TeamId, string KeyMask)
{
    /// <summary>The team of the key made at first start and of <c>PADDOCK_API_KEY</c>.</summary>
    public const string DefaultTeamId = Store.SandboxRecord.DefaultTeamId;

    /// <summary>The stored key's id; null for <c>PADDOCK_API_KEY</c>, which is not stored.</summary>
    public string? KeyId { get; init; }

    /// <summary>The key belongs to an admin team: it may create teams, change their limits and manage their keys.</summary>
    public bool IsAdmin { get; init; }
}

internal static class CallerHttpContextExtensions
{
    private const string ItemKey = "paddock.caller";

    public static void SetCaller(this HttpContext http, Caller caller) => http.Items[ItemKey] = caller;

    /// <summary>The checked caller; throws when called on a request the key check did not pass (a wiring bug).</summary>
    public static Caller GetCaller(this HttpContext http) =>
        http.Items.TryGetValue(ItemKey, out var value) && value is Caller caller
            ? caller
            : throw new InvalidOperationException("no caller on this request: the API key middleware did not run");
}
