using System.Globalization;
using Paddock.Daemon.Api;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Audit;

/// <summary>
/// <c>GET /sandboxes/{id}/audit</c> (a Paddock extension): a sandbox's audit trail, oldest first, for its own team
/// only, while it runs and after it ended (until the audit retention passes). Query: <c>after</c> (a seq: the page
/// after it; <c>next</c> of the previous page), <c>from</c>/<c>to</c> (Unix milliseconds, inclusive), <c>limit</c>
/// (default and at most 1000). Another team's sandbox answers 404 exactly as an unknown id.
/// </summary>
internal static class AuditEndpoints
{
    public const int MaxPage = 1000;

    public static void MapAuditApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/sandboxes/{sandboxID}/audit", GetAsync);
    }

    private static async Task<IResult> GetAsync(string sandboxID, HttpContext http, ISandboxStore store, IAuditStore audit, AuditTrail trail)
    {
        var q = http.Request.Query;
        var after = ParseLong(q["after"], "after", 0);
        var from = ParseMilliseconds(q["from"], "from");
        var to = ParseMilliseconds(q["to"], "to");
        if (from is not null && to is not null && from > to)
        {
            throw ApiRequestException.BadRequest("from is after to");
        }
        var limit = (int)ParseLong(q["limit"], "limit", MaxPage);
        if (limit is < 1 or > MaxPage)
        {
            throw ApiRequestException.BadRequest($"invalid limit {limit}: expected 1 to {MaxPage}");
        }
        if (!SandboxIds.IsWellFormed(sandboxID))
        {
            throw new UnknownSandboxException(sandboxID);
        }
        var team = http.GetCaller().TeamId;
        var record = await store.GetAsync(sandboxID, http.RequestAborted);
        if (record is not null && record.TeamId != team)
        {
            throw new UnknownSandboxException(sandboxID);
        }
        // Everything answered before this request is in the store before it is read.
        await trail.FlushAsync(http.RequestAborted);
        var read = await audit.ReadAsync(sandboxID, after, from, to, limit, http.RequestAborted);
        // A trail can outlive its sandbox record (its retention is its own): then the trail's team decides.
        if (record is null && (read.TeamId is null || read.TeamId != team))
        {
            throw new UnknownSandboxException(sandboxID);
        }
        // The cursor for the next call (paging, or following a live trail): the last seq seen.
        var next = read.Events.Count > 0 ? read.Events[^1].Seq : after;
        return Results.Json(new AuditPage(sandboxID, read.Events, next, read.Dropped, read.DroppedAfterSeq),
            AuditJsonContext.Default.AuditPage);
    }

    private static long ParseLong(string? text, string name, long fallback) =>
        string.IsNullOrEmpty(text) ? fallback
        : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n
        : throw ApiRequestException.BadRequest($"invalid {name} '{text}': expected a non-negative integer");

    private static DateTimeOffset? ParseMilliseconds(string? text, string name) =>
        string.IsNullOrEmpty(text) ? null
        : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var ms) && ms <= 253402300799999
            ? DateTimeOffset.FromUnixTimeMilliseconds(ms)
            : throw ApiRequestException.BadRequest($"invalid {name} '{text}': expected Unix milliseconds");
}
