using System.Buffers.Text;
using System.Globalization;
using System.Net;
using System.Text;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Api;

/// <summary>The filters and the page of a list request (GET /sandboxes, GET /v2/sandboxes).</summary>
internal sealed record SandboxListQuery
{
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    public bool IncludeRunning { get; init; } = true;

    public bool IncludePaused { get; init; } = true;

    public bool Descending { get; init; } = true;

    public DateTimeOffset? StartedAfter { get; init; }

    public string? Template { get; init; }

    public int Limit { get; init; } = SandboxListing.MaxLimit;

    public PageToken? After { get; init; }
}

/// <summary>Where the previous page ended: the last sandbox's start time and id (the sort key).</summary>
internal sealed record PageToken(long StartedAtMs, string SandboxId);

internal static class SandboxListing
{
    public const int MaxLimit = 100;

    /// <summary>
    /// Parses E2B's metadata filter. The SDK percent-encodes each key and value, joins them as a query string
    /// (which percent-encodes them again) and sends that as one parameter, so after the framework's own decoding each
    /// key and value is still encoded twice (packages/js-sdk/src/sandbox/sandboxApi.ts, SandboxPaginator). A plain
    /// <c>metadata=user%3Dabc</c> decodes to the same thing.
    /// </summary>
    public static Dictionary<string, string> ParseMetadataFilter(string? text)
    {
        var filter = new Dictionary<string, string>(StringComparer.Ordinal);
        if (string.IsNullOrEmpty(text))
        {
            return filter;
        }
        foreach (var pair in text.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw ApiRequestException.BadRequest($"invalid metadata filter '{pair}': expected key=value pairs joined by '&'");
            }
            filter[Decode(pair[..eq])] = Decode(pair[(eq + 1)..]);
        }
        return filter;

        static string Decode(string part)
        {
            try
            {
                return Uri.UnescapeDataString(WebUtility.UrlDecode(part));
            }
            catch (UriFormatException)
            {
                throw ApiRequestException.BadRequest($"invalid percent-encoding in metadata filter '{part}'");
            }
        }
    }

    /// <summary>
    /// Parses the v2 state filter (<c>state=running,paused</c>, or the parameter repeated): which states to list. No
    /// filter: both, as E2B lists running and paused sandboxes by default.
    /// </summary>
    public static (bool Running, bool Paused) ParseStateFilter(IEnumerable<string?> values)
    {
        var any = false;
        var running = false;
        var paused = false;
        foreach (var value in values)
        {
            foreach (var state in (value ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                any = true;
                switch (state)
                {
                    case "running":
                        running = true;
                        break;
                    case "paused":
                        paused = true;
                        break;
                    default:
                        throw ApiRequestException.BadRequest($"invalid state '{state}': expected running or paused");
                }
            }
        }
        return any ? (running, paused) : (true, true);
    }

    public static int ParseLimit(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return MaxLimit;
        }
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var limit) && limit is >= 1 and <= MaxLimit
            ? limit
            : throw ApiRequestException.BadRequest($"invalid limit '{text}': expected 1 to {MaxLimit}");
    }

    public static string EncodeToken(PageToken token) =>
        Base64Url.EncodeToString(Encoding.UTF8.GetBytes(token.StartedAtMs.ToString(CultureInfo.InvariantCulture) + "." + token.SandboxId));

    public static PageToken? DecodeToken(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }
        try
        {
            var raw = Encoding.UTF8.GetString(Base64Url.DecodeFromChars(text));
            var dot = raw.IndexOf('.', StringComparison.Ordinal);
            if (dot > 0 && long.TryParse(raw.AsSpan(0, dot), NumberStyles.None, CultureInfo.InvariantCulture, out var ms))
            {
                return new PageToken(ms, raw[(dot + 1)..]);
            }
        }
        catch (FormatException)
        {
        }
        throw ApiRequestException.BadRequest("invalid nextToken: pass the X-Next-Token of the previous page unchanged");
    }

    /// <summary>
    /// Filters and orders <paramref name="sandboxes"/> (running and paused ones together, so that one page order holds
    /// across states); returns one page, the token of the next (if any) and the total.
    /// </summary>
    public static (IReadOnlyList<SandboxRecord> Page, string? NextToken, int Total) Apply(IEnumerable<SandboxRecord> sandboxes, SandboxListQuery query)
    {
        var matching = sandboxes.Where(r => (r.State == SandboxState.Paused ? query.IncludePaused : query.IncludeRunning) && Matches(r, query));
        var ordered = query.Descending
            ? matching.OrderByDescending(r => r.StartedAt.ToUnixTimeMilliseconds()).ThenByDescending(r => r.SandboxId, StringComparer.Ordinal)
            : matching.OrderBy(r => r.StartedAt.ToUnixTimeMilliseconds()).ThenBy(r => r.SandboxId, StringComparer.Ordinal);
        var all = ordered.ToList();
        var start = 0;
        if (query.After is { } after)
        {
            start = all.FindIndex(r => IsAfter(r, after, query.Descending));
            if (start < 0)
            {
                start = all.Count;
            }
        }
        var page = all.Skip(start).Take(query.Limit).ToList();
        string? next = null;
        if (start + page.Count < all.Count && page.Count > 0)
        {
            var last = page[^1];
            next = EncodeToken(new PageToken(last.StartedAt.ToUnixTimeMilliseconds(), last.SandboxId));
        }
        return (page, next, all.Count);
    }

    private static bool Matches(SandboxRecord record, SandboxListQuery query)
    {
        foreach (var (key, value) in query.Metadata)
        {
            if (!record.Metadata.TryGetValue(key, out var actual) || actual != value)
            {
                return false;
            }
        }
        if (query.StartedAfter is { } after && record.StartedAt < after)
        {
            return false;
        }
        return query.Template is null || record.TemplateId == query.Template || record.Alias == query.Template;
    }

    // Keys are compared, not positions, so a page boundary survives sandboxes starting or ending between two calls.
    private static bool IsAfter(SandboxRecord record, PageToken token, bool descending)
    {
        var ms = record.StartedAt.ToUnixTimeMilliseconds();
        var order = ms != token.StartedAtMs ? ms.CompareTo(token.StartedAtMs) : string.CompareOrdinal(record.SandboxId, token.SandboxId);
        return descending ? order < 0 : order > 0;
    }
}
