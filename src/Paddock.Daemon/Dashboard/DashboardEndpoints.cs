using System.Globalization;
using Paddock.Client;
using Paddock.Daemon.Api;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Mcp;
using Paddock.Daemon.Pools;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;
using ClientSandbox = Paddock.Client.Sandbox;

namespace Paddock.Daemon.Dashboard;

/// <summary>
/// The dashboard, <c>/dashboard/</c>: its embedded pages (<see cref="DashboardAssets"/>), the sign-in, and the few calls
/// the E2B API has no answer for (a list with the team, tier and usage now; the host; a sandbox's terminal and files).
/// Everything else the pages read from the ordinary API, authenticated by the session cookie (<see cref="ApiKeyMiddleware"/>).
/// </summary>
/// <remarks>
/// Terminal and files go through this daemon's own API and proxy on loopback with the session's key, as the
/// <c>/mcp</c> tools do: the team check, the audit trail and the idle freezer apply to them as to any SDK's call.
/// </remarks>
internal static class DashboardEndpoints
{
    public const string Prefix = "/dashboard";

    /// <summary>What needs no API key: the pages and libraries, and the sign-in itself (it checks the key it is given).</summary>
    public static bool IsOpen(PathString path) =>
        path.StartsWithSegments(Prefix) && (!path.StartsWithSegments(Prefix + "/api") || path.Equals(Prefix + "/api/session"));

    public static void MapDashboard(this IEndpointRouteBuilder app)
    {
        // Routing matches "/dashboard/" here too (a trailing slash is ignored): only the bare path is sent on, as the
        // pages' relative links need the slash.
        app.MapGet(Prefix, (HttpContext http) => http.Request.Path.Value!.EndsWith('/') ? DashboardAssets.Serve(http, null) : Results.Redirect(Prefix + "/"));
        app.MapGet(Prefix + "/{**file}", (string? file, HttpContext http) => DashboardAssets.Serve(http, file));
        app.MapPost(Prefix + "/api/session", SignInAsync);
        app.MapGet(Prefix + "/api/session", Session);
        app.MapDelete(Prefix + "/api/session", SignOut);
        app.MapGet(Prefix + "/api/sandboxes", ListAsync);
        app.MapDelete(Prefix + "/api/sandboxes/{sandboxID}", KillAsync);
        app.MapPost(Prefix + "/api/sandboxes/{sandboxID}/timeout", ExtendAsync);
        app.MapGet(Prefix + "/api/sandboxes/{sandboxID}/files", ListFilesAsync);
        app.MapGet(Prefix + "/api/sandboxes/{sandboxID}/files/content", DownloadAsync);
        app.MapPost(Prefix + "/api/sandboxes/{sandboxID}/files/content", UploadAsync);
        app.MapGet(Prefix + "/api/sandboxes/{sandboxID}/terminal", DashboardTerminal.RunAsync);
        app.MapGet(Prefix + "/api/host", Host);
    }

    private static async Task<IResult> SignInAsync(HttpContext http, ApiKeyAuthenticator authenticator, DashboardSessions sessions, ILogger<DashboardSessions> logger)
    {
        SignInRequest? request;
        try
        {
            request = await http.Request.ReadFromJsonAsync(DashboardJsonContext.Default.SignInRequest, http.RequestAborted);
        }
        catch (System.Text.Json.JsonException ex)
        {
            throw ApiRequestException.BadRequest($"the body is not valid JSON: {ex.Message}");
        }
        catch (InvalidOperationException)
        {
            throw ApiRequestException.BadRequest("send the key as JSON: {\"apiKey\": \"...\"} with Content-Type application/json");
        }
        var reason = authenticator.Authenticate(request?.ApiKey, out var caller);
        if (reason is not null)
        {
            AuthLog.Refused(logger, http.Request.Method, http.Request.Path, http.Connection.RemoteIpAddress?.ToString(), reason);
            return Error(StatusCodes.Status401Unauthorized, reason);
        }
        var (token, csrf) = sessions.Start(request!.ApiKey!);
        sessions.SetCookie(http, token);
        DashboardLog.SignedIn(logger, caller!.TeamId, caller.KeyMask);
        return Results.Json(new SessionResponse(caller.TeamId, caller.IsAdmin, caller.KeyMask, csrf), DashboardJsonContext.Default.SessionResponse);
    }

    private static IResult Session(HttpContext http, ApiKeyAuthenticator authenticator, DashboardSessions sessions)
    {
        var session = sessions.Find(http.Request.Cookies[DashboardSessions.CookieName]);
        if (session is null || authenticator.Authenticate(session.ApiKey, out var caller) is not null)
        {
            return Error(StatusCodes.Status401Unauthorized, "not signed in");
        }
        return Results.Json(new SessionResponse(caller!.TeamId, caller.IsAdmin, caller.KeyMask, session.Csrf), DashboardJsonContext.Default.SessionResponse);
    }

    private static IResult SignOut(HttpContext http, DashboardSessions sessions)
    {
        var token = http.Request.Cookies[DashboardSessions.CookieName];
        if (sessions.Find(token) is { } session && !DashboardSessions.CsrfMatches(session, http.Request.Headers[DashboardSessions.CsrfHeader]))
        {
            return Error(StatusCodes.Status403Forbidden, $"missing or wrong {DashboardSessions.CsrfHeader} header");
        }
        sessions.End(token);
        http.Response.Cookies.Delete(DashboardSessions.CookieName, new CookieOptions { Path = "/", SameSite = SameSiteMode.Strict, HttpOnly = true, Secure = http.Request.IsHttps });
        return Results.NoContent();
    }

    /// <summary>
    /// The live sandboxes the caller may see (an admin: every team's), filtered by <c>state</c> and <c>metadata</c>
    /// (<c>k=v</c>, repeatable). In a cluster, every node's: the running records of the shared store (the query the
    /// API's lists use), each row naming its node. Whether a sandbox is frozen and its usage now are known only to the
    /// node that runs it, so another node's rows show it as running and carry no usage figures.
    /// </summary>
    private static async Task<IResult> ListAsync(HttpContext http, SandboxManager manager, MetricsHistory history, IdleFreezer freezer, DaemonOptions options, Store.ISandboxStore store)
    {
        var caller = http.GetCaller();
        var state = http.Request.Query["state"].ToString();
        if (state is not ("" or "running" or "frozen"))
        {
            throw ApiRequestException.BadRequest($"invalid state '{state}': expected running or frozen");
        }
        var wanted = new List<KeyValuePair<string, string>>();
        foreach (var pair in http.Request.Query["metadata"])
        {
            var at = pair?.IndexOf('=') ?? -1;
            if (at < 1)
            {
                throw ApiRequestException.BadRequest($"invalid metadata filter '{pair}': expected key=value");
            }
            wanted.Add(new(pair![..at], pair[(at + 1)..]));
        }
        var self = options.Cluster?.NodeId;
        var live = manager.Running.Select(r => (Record: r, Local: true)).ToList();
        if (self is not null)
        {
            // The other nodes' sandboxes; a dead node's are not among them (its records are marked lost).
            var held = live.Select(l => l.Record.SandboxId).ToHashSet(StringComparer.Ordinal);
            live.AddRange((await store.ListAsync([Store.SandboxState.Running], http.RequestAborted))
                .Where(r => !held.Contains(r.SandboxId)).Select(r => (Record: r, Local: false)));
        }
        var rows = new List<DashboardSandbox>();
        foreach (var (r, local) in live.OrderBy(l => l.Record.StartedAt))
        {
            if (r.TeamId != caller.TeamId && !caller.IsAdmin)
            {
                continue;
            }
            var shown = local && freezer.IsFrozen(r.SandboxId) ? "frozen" : "running";
            if ((state.Length > 0 && state != shown)
                || wanted.Any(w => !r.Metadata.TryGetValue(w.Key, out var v) || v != w.Value))
            {
                continue;
            }
            var now = local && history.Samples(r.SandboxId, null, null) is { Count: > 0 } samples ? samples[^1] : null;
            rows.Add(new DashboardSandbox(r.SandboxId, r.TeamId, shown, r.RuntimeName, r.TemplateId, r.Alias, r.Metadata, r.StartedAt, r.EndAt,
                r.CpuCount, r.MemoryMB, now?.CpuUsedPercent, now?.MemoryUsedBytes, r.TeamId == caller.TeamId, local ? self : r.NodeId));
        }
        return Results.Json(rows, DashboardJsonContext.Default.ListDashboardSandbox);
    }

    /// <summary>Kill from the page: the caller's team's sandbox, or any for an admin.</summary>
    private static async Task<IResult> KillAsync(string sandboxID, HttpContext http, SandboxManager manager, ILogger<DashboardSessions> logger)
    {
        var caller = http.GetCaller();
        Visible(manager, caller, sandboxID);
        if (!await manager.KillAsync(sandboxID, $"killed from the dashboard by key {caller.KeyMask} (team {caller.TeamId})"))
        {
            throw new UnknownSandboxException(sandboxID);
        }
        DashboardLog.Killed(logger, sandboxID, caller.TeamId);
        return Results.NoContent();
    }

    private static async Task<IResult> ExtendAsync(string sandboxID, HttpContext http, SandboxManager manager, DaemonOptions options)
    {
        var caller = http.GetCaller();
        Visible(manager, caller, sandboxID);
        ExtendRequest? request;
        try
        {
            request = await http.Request.ReadFromJsonAsync(DashboardJsonContext.Default.ExtendRequest, http.RequestAborted);
        }
        catch (Exception ex) when (ex is System.Text.Json.JsonException or InvalidOperationException)
        {
            throw ApiRequestException.BadRequest("send {\"timeout\": SECONDS} as JSON");
        }
        var max = options.MaxTimeoutSeconds;
        if (request?.Timeout is not { } seconds || seconds < 1 || seconds > max)
        {
            throw ApiRequestException.BadRequest(string.Create(CultureInfo.InvariantCulture, $"invalid timeout: expected 1 to {max} seconds from now"));
        }
        await manager.SetTimeoutAsync(sandboxID, seconds, http.RequestAborted);
        return Results.NoContent();
    }

    private static async Task<IResult> ListFilesAsync(string sandboxID, HttpContext http, LoopbackAddress self, DashboardSessions sessions)
    {
        var path = PathParameter(http);
        await using var sandbox = await ConnectAsync(http, sandboxID, self, sessions);
        var entries = await Client(() => sandbox.Files.ListAsync(path, 1, null, http.RequestAborted));
        var rows = entries.OrderBy(e => e.Type != FileType.Directory).ThenBy(e => e.Name, StringComparer.Ordinal)
            .Select(e => new FileEntryResponse(e.Name, e.Path, e.Type == FileType.Directory ? "dir" : "file", e.Size, e.Permissions)).ToList();
        return Results.Json(rows, DashboardJsonContext.Default.ListFileEntryResponse);
    }

    private static async Task DownloadAsync(string sandboxID, HttpContext http, LoopbackAddress self, DashboardSessions sessions)
    {
        var path = PathParameter(http);
        await using var sandbox = await ConnectAsync(http, sandboxID, self, sessions);
        await using var content = await Client(() => sandbox.Files.OpenReadAsync(path, null, http.RequestAborted));
        http.Response.ContentType = "application/octet-stream";
        var name = Path.GetFileName(path.TrimEnd('/'));
        http.Response.Headers.ContentDisposition = new System.Net.Http.Headers.ContentDispositionHeaderValue("attachment") { FileNameStar = name }.ToString();
        await content.CopyToAsync(http.Response.Body, http.RequestAborted);
    }

    private static async Task<IResult> UploadAsync(string sandboxID, HttpContext http, LoopbackAddress self, DashboardSessions sessions)
    {
        var path = PathParameter(http);
        await using var sandbox = await ConnectAsync(http, sandboxID, self, sessions);
        var written = await Client(() => sandbox.Files.WriteAsync(path, http.Request.Body, null, http.RequestAborted));
        return Results.Json(new FileEntryResponse(written.Name, written.Path, "file", 0, ""), DashboardJsonContext.Default.FileEntryResponse);
    }

    /// <summary>This daemon's own figures; in a cluster, of the node that serves the page, named by its id.</summary>
    private static IResult Host(SandboxManager manager, IdleFreezer freezer, WarmPools pools, DaemonOptions options, IIsolationTiers tiers) =>
        Results.Json(new HostResponse(options.MaxSandboxes, manager.Reserved, manager.Running.Count, freezer.FrozenCount, pools.ReadyCounts,
            tiers.DefaultTier, tiers.Names, options.Cluster?.NodeId), DashboardJsonContext.Default.HostResponse);

    /// <summary>The key this request acts with: its X-API-Key header, or its dashboard session's.</summary>
    internal static string KeyOf(HttpContext http, DashboardSessions sessions)
    {
        var header = http.Request.Headers[ApiKeyAuthenticator.HeaderName].ToString();
        return header.Length > 0 ? header : sessions.KeyFor(http, out _) ?? throw new InvalidOperationException("no key on a request the key check passed");
    }

    /// <summary>
    /// An SDK connection to the sandbox through this daemon's API, with the caller's key. The 1 s timeout is below any
    /// deadline, and E2B's connect only ever extends one: opening a terminal does not move the sandbox's end.
    /// </summary>
    internal static async Task<ClientSandbox> ConnectAsync(HttpContext http, string sandboxId, LoopbackAddress self, DashboardSessions sessions)
    {
        var url = self.Url;
        var connection = new ConnectionOptions
        {
            ApiKey = KeyOf(http, sessions),
            ApiUrl = url,
            SandboxUrl = url,
            HttpHandler = self.Handler,
            RequestTimeout = TimeSpan.FromSeconds(60),
        };
        return await Client(() => ClientSandbox.ConnectAsync(sandboxId, new SandboxConnectOptions { Connection = connection, Timeout = TimeSpan.FromSeconds(1) }, http.RequestAborted));
    }

    /// <summary>The SDK's expected failures as the API's: not found is 404, a bad argument 400.</summary>
    private static async Task<T> Client<T>(Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (Paddock.Client.SandboxNotFoundException ex)
        {
            throw new ApiRequestException(StatusCodes.Status404NotFound, ex.Message);
        }
        catch (NotFoundException ex)
        {
            throw new ApiRequestException(StatusCodes.Status404NotFound, ex.Message);
        }
        catch (InvalidArgumentException ex)
        {
            throw ApiRequestException.BadRequest(ex.Message);
        }
    }

    private static string PathParameter(HttpContext http)
    {
        var path = http.Request.Query["path"].ToString();
        return path.Length > 0 && path[0] == '/' && !path.Contains('\0', StringComparison.Ordinal)
            ? path
            : throw ApiRequestException.BadRequest($"invalid path '{path}': give an absolute path in the sandbox (?path=/home/user)");
    }

    private static void Visible(SandboxManager manager, Caller caller, string sandboxId)
    {
        if (!manager.TryGetRunning(sandboxId, out var record) || (record.TeamId != caller.TeamId && !caller.IsAdmin))
        {
            throw new UnknownSandboxException(sandboxId);
        }
    }

    private static IResult Error(int status, string message) =>
        Results.Json(new ErrorResponse(status, message), ApiJsonContext.Default.ErrorResponse, statusCode: status);
}
