using Microsoft.Net.Http.Headers;

namespace Paddock.Agent.Files;

/// <summary>Content negotiation of a download (envd.yaml: 406 when neither identity nor gzip is acceptable).</summary>
internal static class DownloadEncoding
{
    /// <summary>
    /// gzip when the client asks for it (<c>Accept-Encoding</c>, as envd does), identity otherwise; null when
    /// the client refuses both (406). An empty file is always sent as is: the SDK recognises one by
    /// Content-Length 0.
    /// </summary>
    public static bool? Choose(string acceptEncoding, long length)
    {
        if (string.IsNullOrWhiteSpace(acceptEncoding))
        {
            return false;
        }
        double? gzipQ = null, identityQ = null, anyQ = null;
        if (StringWithQualityHeaderValue.TryParseList(acceptEncoding.Split(','), out var values))
        {
            foreach (var value in values)
            {
                var q = value.Quality ?? 1.0;
                switch (value.Value.Value?.ToLowerInvariant())
                {
                    case "gzip" or "x-gzip": gzipQ = q; break;
                    case "identity": identityQ = q; break;
                    case "*": anyQ = q; break;
                }
            }
        }
        var identityAcceptable = (identityQ ?? (anyQ == 0 ? 0 : 1)) > 0;
        var gzipAcceptable = (gzipQ ?? anyQ ?? 0) > 0;
        if (gzipAcceptable && (length > 0 || !identityAcceptable))
        {
            return true;
        }
        return identityAcceptable ? false : null;
    }
}
