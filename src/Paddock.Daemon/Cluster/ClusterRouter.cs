using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Proxy;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Store;
using Yarp.ReverseProxy.Forwarder;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// Cluster mode's routing: the API and the sandbox proxy of every node answer for every sandbox of the cluster. A
/// request for a sandbox this node does not hold (by <c>{port}-{id}.{domain}</c> host, the <c>E2b-Sandbox-Id</c>
/// header, or an API path <c>/sandboxes/{id}…</c>) is forwarded whole to the node that runs it, by YARP's
/// <see cref="IHttpForwarder"/> (headers, Host, WebSocket upgrades and streamed bodies as the local proxy does); that
/// node then serves it as its own, through its ordinary API and proxy. The owner comes from the sandbox's record
/// (<see cref="PostgresStore.GetNodeAsync"/>) through a short cache (<see cref="OwnerTtl"/>) that a kill through
/// this node and a node's death clear at once. A forwarded request carries <see cref="ForwardedHeader"/>, and a
/// node never forwards such a request again: one hop at most, whatever the records say.
/// <para>
/// A create and an API request are placed or forwarded only once their caller authenticates here
/// (<see cref="ApiKeyCheck"/>, the key check the API itself uses): one that would be refused costs no grain call, no
/// store read and no other node's work, and gets this node's own 401/403. The owner checks the key again. A caller
/// that came by a dashboard session (held in this node's memory only) is forwarded with the session's key in
/// <c>X-API-Key</c> and without its cookie, which the owner would not know. Sandbox traffic (by host or
/// <c>E2b-Sandbox-Id</c>) carries no API key: its owner's proxy checks the sandbox's access token.
/// </para>
/// </summary>
internal sealed class ClusterRouter(
    RequestDelegate next,
    IHttpForwarder forwarder,
    SandboxManager manager,
    SandboxDomain domain,
    ApiKeyCheck check,
    ClusterDirectory directory,
    ClusterPlacement placement,
    Teams.TeamDirectory teams,
    ClusterEviction eviction,
    DaemonOptions options,
    ILogger<ClusterRouter> logger)
{
    /// <summary>Set on a forwarded request, to the forwarding node's id.</summary>
    public const string ForwardedHeader = "X-Paddock-Forwarded-By";

    /// <summary>
    /// Set by a node on its 429 to a forwarded create when it refused for want of a sandbox slot (it created nothing):
    /// the node that placed the create may try another node once.
    /// </summary>
    public const string NodeFullHeader = "X-Paddock-Node-Full";

    /// <summary>The most of a create's body read before placing it: the API's own limit (larger is its 400).</summary>
    public const int MaxCreateBodyBytes = 1024 * 1024;

    /// <summary>Where <see cref="Authenticated"/> leaves a dashboard session's key for the forwarded request.</summary>
    private const string SessionKeyItem = "paddock.cluster.session-key";

    /// <summary>Where <see cref="Authenticated"/> leaves the caller (its team's tier binding is a placement need).</summary>
    private const string CallerItem = "paddock.cluster.caller";

    /// <summary>Set on a create's first forward: a full node's 429 is then held back (<see cref="LostRaceItem"/>) for a retry.</summary>
    private const string RetryableItem = "paddock.cluster.create-retryable";

    /// <summary>Set by the transformer when it held back a full node's 429 (nothing was sent to the client).</summary>
    private const string LostRaceItem = "paddock.cluster.create-lost-race";

    private static readonly ForwarderRequestConfig RequestConfig = new()
    {
        Version = HttpVersion.Version11,
        VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        ActivityTimeout = TimeSpan.FromMinutes(30),
    };

    private readonly HttpMessageInvoker _invoker = new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        UseCookies = false,
        ActivityHeadersPropagator = new ReverseProxyPropagator(DistributedContextPropagator.Current),
        ConnectTimeout = TimeSpan.FromSeconds(10),
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
    });

    private readonly HttpTransformer _transformer = new ForwardingTransformer(options.Cluster!.NodeId);

    public async Task InvokeAsync(HttpContext http)
    {
        if (eviction.Message is { } evicted)
        {
            // Declared dead by the cluster: this node serves nothing, /health included (ClusterEviction).
            await Api.ApiErrorMiddleware.WriteAsync(http, StatusCodes.Status503ServiceUnavailable, evicted);
            return;
        }
        try
        {
            await RouteAsync(http);
        }
        catch (Exception ex) when (!http.Response.HasStarted && IsStoreUnreachable(ex) && Api.ApiErrorMiddleware.Map(ex) is { } error)
        {
            // The router's own store reads (a sandbox's owner, a node's URL) run before the API's error middleware: a
            // store outage here is the same 503 the API answers, not an unhandled 500.
            await Api.ApiErrorMiddleware.WriteAsync(http, error.Code, error.Message);
        }
    }

    private static bool IsStoreUnreachable(Exception ex) => ex is Npgsql.NpgsqlException || ex.InnerException is Npgsql.NpgsqlException;

    private async Task RouteAsync(HttpContext http)
    {
        if (http.Request.Headers.ContainsKey(ForwardedHeader))
        {
            if (IsCreate(http.Request))
            {
                // A 429 of this node's own slot count (SandboxCapacityException: nothing was created) is marked for the
                // placing node, which may then try another; a team's limit or anything else is not. Read as the
                // answer starts: a slot freed in between only leaves the mark off, and the 429 stands as before.
                http.Response.OnStarting(() =>
                {
                    if (http.Response.StatusCode == StatusCodes.Status429TooManyRequests && manager.Reserved >= options.MaxSandboxes)
                    {
                        http.Response.Headers[NodeFullHeader] = "true";
                    }
                    return Task.CompletedTask;
                });
            }
            await next(http);
            return;
        }
        if (IsCreate(http.Request))
        {
            if (Authenticated(http))
            {
                await PlaceAsync(http);
            }
            else
            {
                // Refused here by the API's own key check, as without a cluster; nothing was placed.
                await next(http);
            }
            return;
        }
        if (SandboxOf(http.Request, out var isApi) is not { } sandboxId
            || manager.TryGetRunning(sandboxId, out _) || manager.TryGetPaused(sandboxId, out _)
            || (isApi && !Authenticated(http)))
        {
            await next(http);
            return;
        }
        var owner = await directory.OwnerUrlAsync(sandboxId, http.RequestAborted);
        if (owner is null)
        {
            // Unknown, ended, or on a node that is not an active member: answered here, from the record.
            await next(http);
            return;
        }
        var error = await ForwardAsync(http, owner);
        if (HttpMethods.IsDelete(http.Request.Method))
        {
            directory.Forget(sandboxId);
        }
        if (error is ForwarderError.None or ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.ResponseBodyCanceled)
        {
            return;
        }
        ClusterLog.ForwardFailed(logger, http.Request.Method, http.Request.Path, sandboxId, owner, error.ToString(), http.Features.Get<IForwarderErrorFeature>()?.Exception);
        directory.Forget(sandboxId);
        if (!http.Response.HasStarted)
        {
            await Api.ApiErrorMiddleware.WriteAsync(http, StatusCodes.Status502BadGateway,
                $"sandbox '{sandboxId}' runs on another node of the cluster ({owner}), which did not answer");
        }
    }

    /// <summary>
    /// A create: its body is read (at most the API's 1 MiB) for what it asks (template, tier, CPUs, memory), the node
    /// <see cref="ClusterPlacement"/> chooses gets the body as it came, here or forwarded there. A body that does not
    /// parse is this node's to refuse (its API's 400). When the chosen node refuses for want of a slot (a lost race for
    /// its last one: nothing was created), the create is placed once more, on another node, from the same reports.
    /// </summary>
    private async Task PlaceAsync(HttpContext http)
    {
        var body = await ReadBodyAsync(http);
        if (body is null)
        {
            await Api.ApiErrorMiddleware.WriteAsync(http, StatusCodes.Status400BadRequest, $"request body larger than {MaxCreateBodyBytes} bytes");
            return;
        }
        http.Request.Body = new MemoryStream(body, writable: false);
        if (Needs(http, body) is not { } needs)
        {
            await next(http);
            return;
        }
        var reports = await placement.ReportsAsync(http.RequestAborted);
        var choice = placement.Choose(reports, needs);
        if (choice.NodeId is not { } node)
        {
            await Api.ApiErrorMiddleware.WriteAsync(http, choice.Status, choice.Message!);
            return;
        }
        if (!await TryCreateOnAsync(http, node, retryable: true))
        {
            return;
        }
        // Lost the race for the chosen node's last slot: once more, elsewhere (never back to the node that refused).
        var retry = placement.Choose(reports, needs, new HashSet<string>(StringComparer.Ordinal) { node });
        ClusterLog.CreateRetried(logger, node, retry.NodeId ?? "(none)");
        if (retry.NodeId is not { } other)
        {
            await Api.ApiErrorMiddleware.WriteAsync(http, StatusCodes.Status429TooManyRequests, retry.Status == StatusCodes.Status429TooManyRequests
                ? $"every node of the cluster already runs its maximum of sandboxes (node {node}'s last slot went to another create meanwhile); kill some or add nodes"
                : retry.Message!);
            return;
        }
        http.Request.Body = new MemoryStream(body, writable: false);
        await TryCreateOnAsync(http, other, retryable: false);
    }

    /// <summary>
    /// Runs the create on <paramref name="node"/> (here, or forwarded there) and answers the client, except, when
    /// <paramref name="retryable"/>, a 429 of that node's full slot count: then nothing was answered, and true.
    /// </summary>
    private async Task<bool> TryCreateOnAsync(HttpContext http, string node, bool retryable)
    {
        if (node == options.Cluster!.NodeId)
        {
            if (!retryable)
            {
                await next(http);
                return false;
            }
            // The answer is held until it is known whether this node lost its own last slot (a create's answer is one
            // small JSON document), so that the loser can still go elsewhere.
            var original = http.Response.Body;
            using var buffer = new MemoryStream();
            http.Response.Body = buffer;
            try
            {
                await next(http);
            }
            finally
            {
                http.Response.Body = original;
            }
            if (http.Response.StatusCode == StatusCodes.Status429TooManyRequests && manager.Reserved >= options.MaxSandboxes && !http.Response.HasStarted)
            {
                http.Response.Clear();
                return true;
            }
            buffer.Position = 0;
            await buffer.CopyToAsync(original, http.RequestAborted);
            return false;
        }
        if (await directory.NodeUrlAsync(node, http.RequestAborted) is not { } url)
        {
            await next(http);
            return false;
        }
        if (retryable)
        {
            http.Items[RetryableItem] = true;
        }
        var error = await ForwardAsync(http, url);
        http.Items.Remove(RetryableItem);
        if (http.Items.Remove(LostRaceItem))
        {
            return true;
        }
        if (error is ForwarderError.None or ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.ResponseBodyCanceled)
        {
            return false;
        }
        ClusterLog.ForwardFailed(logger, http.Request.Method, http.Request.Path, "(new)", url, error.ToString(), http.Features.Get<IForwarderErrorFeature>()?.Exception);
        if (!http.Response.HasStarted)
        {
            await Api.ApiErrorMiddleware.WriteAsync(http, StatusCodes.Status503ServiceUnavailable,
                $"the node chosen for this sandbox ({node}) did not answer; try again");
        }
        return false;
    }

    /// <summary>The request's body, read whole; null when it is larger than <see cref="MaxCreateBodyBytes"/>.</summary>
    private static async Task<byte[]?> ReadBodyAsync(HttpContext http)
    {
        if (http.Request.ContentLength > MaxCreateBodyBytes)
        {
            return null;
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await http.Request.Body.ReadAsync(chunk, http.RequestAborted)) > 0)
        {
            if (buffer.Length + read > MaxCreateBodyBytes)
            {
                return null;
            }
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    /// <summary>
    /// What the create asks, as the API will read it (<see cref="Api.CreateSandboxValidation"/>: tier names trimmed
    /// and lower case; a team bound to a tier gets that tier unless the create names one, which the API then judges);
    /// null when the body is not a create the API would accept as JSON.
    /// </summary>
    private PlacementNeeds? Needs(HttpContext http, byte[] body)
    {
        Api.NewSandboxRequest? request;
        try
        {
            request = body.Length == 0 ? null : System.Text.Json.JsonSerializer.Deserialize(body, Api.ApiJsonContext.Default.NewSandboxRequest);
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
        if (request is null)
        {
            return null;
        }
        var isolation = request.Isolation?.Trim().ToLowerInvariant() is { Length: > 0 } asked ? asked
            : http.Items.TryGetValue(CallerItem, out var value) && value is Caller caller ? teams.LimitsOf(caller.TeamId).Isolation : null;
        return new PlacementNeeds(request.TemplateId?.Trim(), isolation, request.CpuCount, request.MemoryMB, request.DiskSizeMB);
    }

    private ValueTask<ForwarderError> ForwardAsync(HttpContext http, string url) =>
        forwarder.SendAsync(http, url, _invoker, RequestConfig, _transformer);

    /// <summary>Whether the request's caller authenticates on this node; a session's key is kept for the forward.</summary>
    private bool Authenticated(HttpContext http)
    {
        var result = check.Check(http);
        if (result.Caller is { } caller)
        {
            http.Items[CallerItem] = caller;
        }
        if (result.SessionKey is { } key)
        {
            http.Items[SessionKeyItem] = key;
        }
        return result.Caller is not null;
    }

    private static bool IsCreate(HttpRequest request) =>
        HttpMethods.IsPost(request.Method) && request.Path.Value is "/sandboxes" or "/v2/sandboxes"
        && !request.Headers.ContainsKey(SandboxRouting.SandboxIdHeader);

    /// <summary>
    /// The sandbox a request is about: sandbox traffic by host or headers, or an API path naming one
    /// (<paramref name="isApi"/>: the API key decides, not the sandbox's access token).
    /// </summary>
    private string? SandboxOf(HttpRequest request, out bool isApi)
    {
        isApi = false;
        var route = SandboxRouting.Route(request, domain.HostName);
        if (route.Kind == SandboxRouting.Kind.Sandbox)
        {
            return route.Target.SandboxId;
        }
        if (route.Kind != SandboxRouting.Kind.ControlPlane)
        {
            return null;
        }
        isApi = true;
        // /sandboxes/{id}[/…] and /v2/sandboxes/{id}[/…]; /sandboxes/metrics is a listing, not an id. The dashboard's
        // calls on one sandbox (/dashboard/api/sandboxes/{id}[/…]) act through the owner's memory too, all but its
        // terminal: that checks the session itself (held here only), and reaches the sandbox through this node's own
        // API and proxy, which forward.
        var path = request.Path.Value.AsSpan();
        if (path.StartsWith("/v2/", StringComparison.Ordinal))
        {
            path = path[3..];
        }
        else if (path.StartsWith("/dashboard/api/", StringComparison.Ordinal))
        {
            path = path["/dashboard/api".Length..];
            if (path.EndsWith("/terminal", StringComparison.Ordinal))
            {
                return null;
            }
        }
        if (!path.StartsWith("/sandboxes/", StringComparison.Ordinal))
        {
            return null;
        }
        path = path["/sandboxes/".Length..];
        var slash = path.IndexOf('/');
        var id = slash < 0 ? path : path[..slash];
        return SandboxIds.IsWellFormed(id) ? id.ToString() : null;
    }

    private sealed class ForwardingTransformer(string self) : HttpTransformer
    {
        /// <summary>
        /// A create's first forward that the node refused for want of a slot (<see cref="NodeFullHeader"/>) is not
        /// answered: nothing of it is copied to the client, and the router places it once more.
        /// </summary>
        public override ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
        {
            if (proxyResponse is { StatusCode: HttpStatusCode.TooManyRequests } && httpContext.Items.ContainsKey(RetryableItem)
                && proxyResponse.Headers.Contains(NodeFullHeader))
            {
                httpContext.Items[LostRaceItem] = true;
                return ValueTask.FromResult(false);
            }
            return base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        }

        public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
        {
            await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
            // The owner routes {port}-{id}.{domain} hosts by the name the client used: the Host goes through unchanged.
            proxyRequest.Headers.Host = httpContext.Request.Host.Value;
            proxyRequest.Headers.TryAddWithoutValidation(ForwardedHeader, self);
            if (httpContext.Items.TryGetValue(SessionKeyItem, out var value) && value is string key)
            {
                // The owner does not know this node's dashboard sessions: it gets the key the session stands for
                // (its CSRF token was checked here), and no cookie that it would try and fail to use.
                proxyRequest.Headers.Remove("Cookie");
                proxyRequest.Headers.TryAddWithoutValidation(ApiKeyAuthenticator.HeaderName, key);
            }
        }
    }
}

/// <summary>
/// Where sandboxes and nodes are: the owner of a sandbox from its record, cached for <see cref="OwnerTtl"/>, and each
/// node's API URL from <c>cluster_nodes</c> (written by the node itself at start). A node that is not an active
/// member has no URL here: its sandboxes are answered locally (404 once they are marked lost).
/// </summary>
internal sealed class ClusterDirectory
{
    /// <summary>How long an owner is trusted without asking the store again (a kill elsewhere is seen at most this late).</summary>
    public static readonly TimeSpan OwnerTtl = TimeSpan.FromSeconds(2);

    private readonly ConcurrentDictionary<string, (string? Node, DateTimeOffset Until)> _owners = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _urls = new(StringComparer.Ordinal);
    private readonly PostgresStore _store;
    private readonly ClusterMembership _membership;
    private readonly DaemonOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<ClusterDirectory> _logger;

    public ClusterDirectory(PostgresStore store, ClusterMembership membership, DaemonOptions options, TimeProvider time, ILogger<ClusterDirectory> logger)
    {
        _logger = logger;
        _store = store;
        _membership = membership;
        _options = options;
        _time = time;
        membership.NodeChanged += ForgetNode;
    }

    /// <summary>The API URL of the live node that runs <paramref name="sandboxId"/>, or null (unknown, ended, local, or its node is not active).</summary>
    public async Task<string?> OwnerUrlAsync(string sandboxId, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        string? node;
        if (_owners.TryGetValue(sandboxId, out var cached) && cached.Until > now)
        {
            node = cached.Node;
        }
        else
        {
            try
            {
                var found = await _store.GetNodeAsync(sandboxId, cancellationToken);
                node = found is { State: not SandboxState.Killed } f ? f.NodeId : null;
            }
            catch (Npgsql.NpgsqlException) when (cached.Node is { } last && _membership.IsActive(last))
            {
                // The store is unreachable (PostgreSQL down or restarting), and this node looked the owner up before: a
                // sandbox never moves to another node, so its last owner, if still a member, is where it runs or ran.
                // A sandbox that ended meanwhile is answered there. Not cached anew: the store is asked again next time.
                ClusterLog.OwnerFromStaleCache(_logger, sandboxId, last);
                return last == _options.Cluster!.NodeId ? null : await NodeUrlAsync(last, cancellationToken);
            }
            _owners[sandboxId] = (node, now + OwnerTtl);
            if (_owners.Count > 100_000)
            {
                // Bounded: expired entries go when the cache grows (ids are random, so it would otherwise only grow).
                foreach (var (id, entry) in _owners)
                {
                    if (entry.Until <= now)
                    {
                        _owners.TryRemove(id, out _);
                    }
                }
            }
        }
        if (node is null || node == _options.Cluster!.NodeId || !_membership.IsActive(node))
        {
            return null;
        }
        return await NodeUrlAsync(node, cancellationToken);
    }

    /// <summary>The API URL a node registered (cached until the node changes), or null.</summary>
    public async Task<string?> NodeUrlAsync(string node, CancellationToken cancellationToken)
    {
        if (!_urls.TryGetValue(node, out var url))
        {
            url = await _store.GetNodeUrlAsync(node, cancellationToken);
            if (url is null)
            {
                return null;
            }
            _urls[node] = url;
        }
        return url;
    }

    public void Forget(string sandboxId) => _owners.TryRemove(sandboxId, out _);

    /// <summary>A node died or came back: its sandboxes' owners and its URL are read again.</summary>
    public void ForgetNode(string nodeId)
    {
        _urls.TryRemove(nodeId, out _);
        foreach (var (id, entry) in _owners)
        {
            if (entry.Node == nodeId)
            {
                _owners.TryRemove(id, out _);
            }
        }
    }
}
