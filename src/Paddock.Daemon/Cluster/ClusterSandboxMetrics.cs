using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Paddock.Daemon.Api;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Dashboard;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// Cluster mode's <see cref="IRemoteSandboxMetrics"/>: each id's owner from its record (<see cref="ClusterDirectory"/>,
/// cached as the router's), then one <c>GET /sandboxes/metrics</c> per owner node with only its ids, all at once, each
/// given at most <see cref="Timeout"/>. The request carries the caller's key and <see cref="ClusterRouter.ForwardedHeader"/>,
/// so the owner authenticates the caller itself and answers from its own memory with its own team check (the same
/// endpoint code), and does not ask further. HTTP rather than a grain call: the owner's ordinary key check, team
/// filter and audit apply unchanged, and no metrics type becomes part of the grain contract. A node that does not
/// answer in time or refuses has its ids left out, as unknown ids are, and is logged.
/// </summary>
internal sealed class ClusterSandboxMetrics(ClusterDirectory directory, DashboardSessions sessions, DaemonOptions options, ILogger<ClusterSandboxMetrics> logger)
    : IRemoteSandboxMetrics, IDisposable
{
    /// <summary>
    /// An owner reads each sandbox's cgroup figures from its memory and files: milliseconds. 3 s, as the team
    /// reload's bound (ClusterTeamFanout), keeps a slow or cut-off node from holding the whole listing for long.
    /// </summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(3);

    /// <summary>Owners looked up at once: at most 100 ids per listing, each a cached or one-row store read.</summary>
    private const int LookupParallelism = 8;

    private static readonly IReadOnlyDictionary<string, SandboxMetricResponse> None = new Dictionary<string, SandboxMetricResponse>();

    private readonly HttpClient _client = new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        UseCookies = false,
        ConnectTimeout = Timeout,
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
    })
    { Timeout = System.Threading.Timeout.InfiniteTimeSpan };

    public async Task<IReadOnlyDictionary<string, SandboxMetricResponse>> GetAsync(HttpContext http, IReadOnlyList<string> ids, CancellationToken cancellationToken)
    {
        if (ids.Count == 0 || http.Request.Headers.ContainsKey(ClusterRouter.ForwardedHeader))
        {
            // Forwarded: another node asks for the ids it found here; this node answers from its memory only (one hop).
            return None;
        }
        var owners = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var lookups = new (string Id, string? Url)[ids.Count];
        await Parallel.ForAsync(0, ids.Count, new ParallelOptions { MaxDegreeOfParallelism = LookupParallelism, CancellationToken = cancellationToken },
            async (i, ct) => lookups[i] = (ids[i], await directory.OwnerUrlAsync(ids[i], ct)));
        foreach (var (id, url) in lookups)
        {
            // Null: unknown, ended, this node's, or on a node that is not an active member: nothing to ask.
            if (url is not null)
            {
                (owners.TryGetValue(url, out var list) ? list : owners[url] = []).Add(id);
            }
        }
        if (owners.Count == 0)
        {
            return None;
        }
        var key = DashboardEndpoints.KeyOf(http, sessions);
        var answers = await Task.WhenAll(owners.Select(o => AskAsync(o.Key, o.Value, key, cancellationToken)));
        var result = new Dictionary<string, SandboxMetricResponse>(StringComparer.Ordinal);
        foreach (var answer in answers)
        {
            foreach (var (id, metric) in answer)
            {
                result.TryAdd(id, metric);
            }
        }
        return result;
    }

    /// <summary>One owner's answer for its ids, or none (logged) when it did not give one in time.</summary>
    private async Task<IReadOnlyDictionary<string, SandboxMetricResponse>> AskAsync(string url, List<string> ids, string key, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Timeout);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"{url.TrimEnd('/')}/sandboxes/metrics?sandbox_ids={string.Join(',', ids.Select(Uri.EscapeDataString))}");
            request.Headers.TryAddWithoutValidation(ApiKeyAuthenticator.HeaderName, key);
            request.Headers.TryAddWithoutValidation(ClusterRouter.ForwardedHeader, options.Cluster!.NodeId);
            using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseContentRead, timeout.Token);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                ClusterLog.MetricsNotAnswered(logger, url, ids.Count, $"HTTP {(int)response.StatusCode}", null);
                return None;
            }
            var body = await response.Content.ReadFromJsonAsync(ApiJsonContext.Default.SandboxesWithMetricsResponse, timeout.Token);
            // Only the ids it was asked for: a node answers for nothing else in this listing.
            return body?.Sandboxes.Where(p => ids.Contains(p.Key, StringComparer.Ordinal)).ToDictionary(StringComparer.Ordinal) ?? None;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            ClusterLog.MetricsNotAnswered(logger, url, ids.Count, $"no answer within {Timeout.TotalSeconds:F0} s", null);
        }
        catch (Exception ex) when (ex is HttpRequestException or JsonException or NotSupportedException)
        {
            ClusterLog.MetricsNotAnswered(logger, url, ids.Count, ex.GetType().Name, ex);
        }
        return None;
    }

    public void Dispose() => _client.Dispose();
}
