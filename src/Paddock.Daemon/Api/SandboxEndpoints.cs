using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Proxy;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Store;
using Paddock.Daemon.Teams;

namespace Paddock.Daemon.Api;

/// <summary>
/// E2B's control plane (spec/openapi.yml of e2b-dev/E2B): the routes the SDKs call, v1 and v2 forms alike (SDK 2.x
/// creates with POST /v2/sandboxes and connects with POST /v2/sandboxes/{id}/connect).
/// </summary>
internal static class SandboxEndpoints
{
    /// <summary>The envd version the agent speaks; the SDKs gate features on it.</summary>
    public const string EnvdVersion = "0.6.4";

    /// <summary>E2B's deprecated, still required <c>clientID</c>.</summary>
    public const string ClientId = "paddock";

    private const int MaxBodyBytes = 1024 * 1024;

    public static void MapSandboxApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/health", (SandboxManager manager) =>
            Results.Json(new HealthResponse("ok", manager.RuntimeName, manager.Running.Count), ApiJsonContext.Default.HealthResponse));

        app.MapPost("/sandboxes", CreateAsync);
        app.MapPost("/v2/sandboxes", CreateAsync);
        app.MapGet("/sandboxes", ListV1);
        app.MapGet("/v2/sandboxes", ListV2);
        app.MapGet("/sandboxes/metrics", ListMetricsAsync);
        app.MapGet("/sandboxes/{sandboxID}", GetAsync);
        app.MapDelete("/sandboxes/{sandboxID}", KillAsync);
        app.MapPost("/sandboxes/{sandboxID}/timeout", SetTimeoutAsync);
        app.MapPut("/sandboxes/{sandboxID}/network", UpdateNetworkAsync);
        app.MapPost("/sandboxes/{sandboxID}/connect", ConnectAsync);
        app.MapPost("/v2/sandboxes/{sandboxID}/connect", ConnectAsync);
        app.MapPost("/sandboxes/{sandboxID}/refreshes", RefreshAsync);
        app.MapGet("/sandboxes/{sandboxID}/metrics", GetMetricsAsync);
        app.MapGet("/sandboxes/{sandboxID}/logs", GetLogsV1Async);
        app.MapGet("/v2/sandboxes/{sandboxID}/logs", GetLogsV2Async);
        app.MapPost("/sandboxes/{sandboxID}/pause", PauseAsync);
        app.MapPost("/sandboxes/{sandboxID}/resume", ResumeAsync);
        app.MapPost("/sandboxes/{sandboxID}/fork", ForkAsync);
    }

    private static async Task<IResult> CreateAsync(HttpContext http, SandboxManager manager, DaemonOptions options, SandboxDomain domain, TeamDirectory teams)
    {
        var request = await ReadBodyAsync(http, ApiJsonContext.Default.NewSandboxRequest, required: true);
        var team = http.GetCaller().TeamId;
        var command = CreateSandboxValidation.Validate(request!, options) with { TeamId = team, TeamLimits = teams.LimitsOf(team) };
        using var volumeLease = await http.RequestServices.GetRequiredService<Volumes.VolumeManager>().AcquireAsync(team, command.VolumeMounts, http.RequestAborted);
        command = command with { Volumes = volumeLease };
        using var trace = new CreateTrace();
        SandboxRecord record;
        try
        {
            record = await manager.CreateAsync(command, http.RequestAborted, trace);
            // A built template's start command and ready check (issue 7), before the client gets the sandbox.
            await http.RequestServices.GetRequiredService<Templates.TemplateStartup>().RunAsync(record, command.EnvVars, pooled: trace.Path is "pooled" or SandboxManager.StartImagePath, http.RequestAborted);
            trace.Mark("template-startup");
        }
        catch (Exception ex)
        {
            trace.Complete(null, ex);
            throw;
        }
        trace.Complete(record.SandboxId, null);
        // W3C Server Timing: where this create's time went, for clients and the bench (the daemon logs it at debug).
        http.Response.Headers["Server-Timing"] = trace.ToServerTiming();
        return Results.Json(ToSandbox(record, domain), ApiJsonContext.Default.SandboxResponse, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> ListV1(HttpContext http, SandboxManager manager, DaemonOptions options, ISandboxStore store)
    {
        var query = new SandboxListQuery { Metadata = SandboxListing.ParseMetadataFilter(http.Request.Query["metadata"]) };
        var (running, _) = await OwnListedAsync(http, manager, options, store);
        var (page, _, _) = SandboxListing.Apply(running, query with { Limit = int.MaxValue });
        return Results.Json(page.Select(ToListed).ToList(), ApiJsonContext.Default.ListListedSandboxResponse);
    }

    private static async Task<IResult> ListV2(HttpContext http, SandboxManager manager, DaemonOptions options, ISandboxStore store)
    {
        var q = http.Request.Query;
        var order = q["order"].ToString();
        if (order is not ("" or "asc" or "desc"))
        {
            throw ApiRequestException.BadRequest($"invalid order '{order}': expected asc or desc");
        }
        DateTimeOffset? startedAfter = null;
        if (q["startedAfter"].ToString() is { Length: > 0 } startedText)
        {
            startedAfter = DateTimeOffset.TryParse(startedText, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t)
                ? t
                : throw ApiRequestException.BadRequest($"invalid startedAfter '{startedText}': expected an RFC 3339 date-time");
        }
        var states = SandboxListing.ParseStateFilter(q["state"]);
        var query = new SandboxListQuery
        {
            Metadata = SandboxListing.ParseMetadataFilter(q["metadata"]),
            IncludeRunning = states.Running,
            IncludePaused = states.Paused,
            Descending = order != "asc",
            StartedAfter = startedAfter,
            Template = q["template"].ToString() is { Length: > 0 } template ? template : null,
            Limit = SandboxListing.ParseLimit(q["limit"]),
            After = SandboxListing.DecodeToken(q["nextToken"]),
        };
        var (running, paused) = await OwnListedAsync(http, manager, options, store);
        var (page, next, _) = SandboxListing.Apply(running.Concat(paused), query);
        if (next is not null)
        {
            http.Response.Headers["X-Next-Token"] = next;
        }
        if (query.IncludeRunning)
        {
            var total = SandboxListing.Apply(running, query with { IncludePaused = false, After = null, Limit = int.MaxValue }).Total;
            http.Response.Headers["X-Total-Running"] = total.ToString(CultureInfo.InvariantCulture);
        }
        return Results.Json(page.Select(ToListed).ToList(), ApiJsonContext.Default.ListListedSandboxResponse);
    }

    private static async Task<IResult> GetAsync(string sandboxID, SandboxManager manager, ISandboxStore store, SandboxDomain domain, HttpContext http)
    {
        var record = OwnPaused(http, manager, sandboxID) ?? await GetRunningOrExplainAsync(sandboxID, manager, store, http);
        var mounts = http.RequestServices.GetRequiredService<Volumes.VolumeManager>().MountsOf(sandboxID);
        return Results.Json(ToDetail(record, domain) with { VolumeMounts = [.. mounts.Select(m => new VolumeMountResponse(m.Name, m.Path))] },
            ApiJsonContext.Default.SandboxDetailResponse);
    }

    private static async Task<IResult> KillAsync(string sandboxID, SandboxManager manager, ISandboxStore store, HttpContext http)
    {
        // Ownership first: another team's sandbox must answer exactly as an unknown one does.
        if (OwnPaused(http, manager, sandboxID) is not null && await manager.KillAsync(sandboxID, "killed by API request"))
        {
            return Results.NoContent();
        }
        await GetRunningOrExplainAsync(sandboxID, manager, store, http);
        if (!await manager.KillAsync(sandboxID, "killed by API request"))
        {
            await GetRunningOrExplainAsync(sandboxID, manager, store, http);
        }
        return Results.NoContent();
    }

    private static async Task<IResult> SetTimeoutAsync(string sandboxID, HttpContext http, SandboxManager manager, ISandboxStore store, DaemonOptions options)
    {
        var request = await ReadBodyAsync(http, ApiJsonContext.Default.TimeoutRequest, required: true);
        var timeout = CreateSandboxValidation.ValidateTimeout(request!.Timeout, options)
            ?? throw ApiRequestException.BadRequest("timeout is required");
        await GetRunningOrExplainAsync(sandboxID, manager, store, http);
        await manager.SetTimeoutAsync(sandboxID, timeout, http.RequestAborted);
        return Results.NoContent();
    }

    private static async Task<IResult> UpdateNetworkAsync(string sandboxID, HttpContext http, SandboxManager manager, ISandboxStore store)
    {
        var request = await ReadBodyAsync(http, ApiJsonContext.Default.NetworkUpdateRequest, required: true);
        if (request!.EgressProxy is { ValueKind: not JsonValueKind.Null })
        {
            throw ApiRequestException.BadRequest("network.egressProxy: egress proxies are not supported by paddockd");
        }
        if (request.Rules is { ValueKind: not JsonValueKind.Null })
        {
            throw ApiRequestException.BadRequest("network.rules: egress transform rules are not supported by paddockd");
        }
        var policy = CreateSandboxValidation.ValidateEgress(request.AllowInternetAccess, request.AllowOut, request.DenyOut);
        await GetRunningOrExplainAsync(sandboxID, manager, store, http);
        await manager.UpdateNetworkAsync(sandboxID, policy, http.RequestAborted);
        return Results.NoContent();
    }

    /// <summary>
    /// E2B's connect: 200 with the sandbox when it runs (a timeout only extends its deadline), 201 when this call
    /// resumed it from a pause (same id and tokens; the timeout, else the daemon's default, counts from now).
    /// </summary>
    private static async Task<IResult> ConnectAsync(string sandboxID, HttpContext http, SandboxManager manager, ISandboxStore store, DaemonOptions options,
        SandboxDomain domain, TeamDirectory teams)
    {
        var request = await ReadBodyAsync(http, ApiJsonContext.Default.ConnectRequest, required: false);
        var timeout = CreateSandboxValidation.ValidateTimeout(request?.Timeout, options);
        if (OwnPaused(http, manager, sandboxID) is null)
        {
            await GetRunningOrExplainAsync(sandboxID, manager, store, http);
        }
        var team = http.GetCaller().TeamId;
        // memory: false (the SDK's onResume: "reboot") boots a paused sandbox afresh on its kept files even when its pause
        // kept memory; absent or true resumes whatever the pause kept. A running sandbox is only connected to.
        var (record, resumed) = await manager.ConnectOrResumeAsync(sandboxID, timeout, teams.LimitsOf(team), http.RequestAborted, keepMemory: request?.Memory ?? true);
        return Results.Json(ToSandbox(record, domain), ApiJsonContext.Default.SandboxResponse,
            statusCode: resumed ? StatusCodes.Status201Created : StatusCodes.Status200OK);
    }

    private static async Task<IResult> RefreshAsync(string sandboxID, HttpContext http, SandboxManager manager, ISandboxStore store, DaemonOptions options)
    {
        var request = await ReadBodyAsync(http, ApiJsonContext.Default.TimeoutRequest, required: false);
        await GetRunningOrExplainAsync(sandboxID, manager, store, http);
        await manager.ConnectAsync(sandboxID, CreateSandboxValidation.ValidateTimeout(request?.Timeout, options) ?? options.DefaultTimeoutSeconds, http.RequestAborted);
        return Results.NoContent();
    }

    private static async Task<IResult> GetMetricsAsync(string sandboxID, HttpContext http, SandboxManager manager, ISandboxStore store, MetricsHistory history)
    {
        var start = ParseUnixSeconds(http.Request.Query["start"], "start");
        var end = ParseUnixSeconds(http.Request.Query["end"], "end");
        if (start is not null && end is not null && start > end)
        {
            throw ApiRequestException.BadRequest("start must not be after end");
        }
        await GetRunningOrExplainAsync(sandboxID, manager, store, http);
        // A sample of now joins the history first, so that a range reaching the present (or none) always has it,
        // even for a sandbox younger than one sweep; the answer is the kept samples in the range.
        var usage = await manager.GetUsageAsync(sandboxID, http.RequestAborted);
        history.Record(sandboxID, usage);
        var samples = history.Samples(sandboxID, start, end);
        return Results.Json(samples.Select(ToMetric).ToList(), ApiJsonContext.Default.ListSandboxMetricResponse);
    }

    private static async Task<IResult> ListMetricsAsync(HttpContext http, SandboxManager manager, IRemoteSandboxMetrics remote)
    {
        var ids = http.Request.Query["sandbox_ids"].SelectMany(v => (v ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Distinct(StringComparer.Ordinal).ToList();
        if (ids.Count == 0)
        {
            throw ApiRequestException.BadRequest("sandbox_ids is required");
        }
        if (ids.Count > 100)
        {
            throw ApiRequestException.BadRequest("sandbox_ids can name at most 100 sandboxes");
        }
        // Ids this daemon does not hold may run on another node of a cluster: their owners are asked meanwhile, each
        // checking the caller's key and team itself (a single daemon has none to ask).
        var elsewhere = remote.GetAsync(http, [.. ids.Where(id => !manager.TryGetRunning(id, out _) && !manager.TryGetPaused(id, out _))], http.RequestAborted);
        var result = new Dictionary<string, SandboxMetricResponse>(StringComparer.Ordinal);
        foreach (var id in ids)
        {
            if (manager.TryGetRunning(id, out var running) && running.TeamId == http.GetCaller().TeamId)
            {
                try
                {
                    result[id] = ToMetric(await manager.GetUsageAsync(id, http.RequestAborted));
                }
                catch (UnknownSandboxException)
                {
                    // Ended between the two calls: a list leaves it out rather than failing.
                }
            }
        }
        foreach (var (id, metric) in await elsewhere)
        {
            result.TryAdd(id, metric);
        }
        return Results.Json(new SandboxesWithMetricsResponse(result), ApiJsonContext.Default.SandboxesWithMetricsResponse);
    }

    private static async Task<IResult> GetLogsV1Async(string sandboxID, HttpContext http, ISandboxStore store, DaemonOptions options)
    {
        var start = ParseUnixMilliseconds(http.Request.Query["start"], "start");
        var limit = ParseLogLimit(http.Request.Query["limit"], options);
        await RequireRecordAsync(sandboxID, store, http);
        var lines = await store.GetLogsAsync(sandboxID, start, limit, backward: false, http.RequestAborted);
        return Results.Json(new SandboxLogsResponse(
            lines.Select(l => new SandboxLogResponse(l.Timestamp, l.Message)).ToList(),
            lines.Select(ToLogEntry).ToList()), ApiJsonContext.Default.SandboxLogsResponse);
    }

    private static async Task<IResult> GetLogsV2Async(string sandboxID, HttpContext http, ISandboxStore store, DaemonOptions options)
    {
        var q = http.Request.Query;
        var cursor = ParseUnixMilliseconds(q["cursor"], "cursor");
        var limit = ParseLogLimit(q["limit"], options);
        var direction = q["direction"].ToString();
        if (direction is not ("" or "forward" or "backward"))
        {
            throw ApiRequestException.BadRequest($"invalid direction '{direction}': expected forward or backward");
        }
        var minimum = q["level"].ToString() switch
        {
            "" or "debug" => SandboxLogLevel.Debug,
            "info" => SandboxLogLevel.Info,
            "warn" => SandboxLogLevel.Warn,
            "error" => SandboxLogLevel.Error,
            var other => throw ApiRequestException.BadRequest($"invalid level '{other}': expected debug, info, warn or error"),
        };
        var search = q["search"].ToString();
        if (search.Length > 256)
        {
            throw ApiRequestException.BadRequest("search is longer than 256 characters");
        }
        await RequireRecordAsync(sandboxID, store, http);
        // A sandbox keeps at most LogLinesPerSandbox lines, so filtering them all in memory is bounded.
        var lines = await store.GetLogsAsync(sandboxID, cursor, options.LogLinesPerSandbox, direction == "backward", http.RequestAborted);
        var entries = lines.Where(l => l.Level >= minimum && (search.Length == 0 || l.Message.Contains(search, StringComparison.Ordinal)))
            .Take(limit).Select(ToLogEntry).ToList();
        return Results.Json(new SandboxLogsV2Response(entries), ApiJsonContext.Default.SandboxLogsV2Response);
    }

    /// <summary>
    /// E2B's pause: 204 once it is paused; 409 when it is paused already (the SDK's pause() then answers false); a 400
    /// naming the tier when the tier cannot keep what was asked (memory: true on a filesystem-only tier).
    /// </summary>
    private static async Task<IResult> PauseAsync(string sandboxID, HttpContext http, SandboxManager manager, ISandboxStore store, TeamDirectory teams)
    {
        var request = await ReadBodyAsync(http, ApiJsonContext.Default.PauseRequest, required: false);
        if (OwnPaused(http, manager, sandboxID) is not null)
        {
            throw new SandboxStateConflictException($"sandbox '{sandboxID}' is already paused");
        }
        await GetRunningOrExplainAsync(sandboxID, manager, store, http);
        var team = http.GetCaller().TeamId;
        await manager.PauseAsync(sandboxID, request?.Memory, teams.LimitsOf(team), "paused by API request", http.RequestAborted);
        return Results.NoContent();
    }

    /// <summary>
    /// E2B's fork: 201 with one <c>{sandbox}</c> or <c>{error}</c> per copy, in order (each copy succeeds or fails on its
    /// own: a copy past the team's or the host's limits gets a 429 entry); any other status means no copy was attempted:
    /// 400 for a count outside 1-100 or a tier that cannot fork, 404, 409 when the source is paused.
    /// </summary>
    private static async Task<IResult> ForkAsync(string sandboxID, HttpContext http, SandboxManager manager, ISandboxStore store, DaemonOptions options,
        SandboxDomain domain, TeamDirectory teams)
    {
        var request = await ReadBodyAsync(http, ApiJsonContext.Default.ForkRequest, required: false);
        var count = request?.Count ?? 1;
        if (count is < 1 or > 100)
        {
            throw ApiRequestException.BadRequest($"count must be between 1 and 100, got {count}");
        }
        var timeout = CreateSandboxValidation.ValidateTimeout(request?.Timeout, options) ?? options.DefaultTimeoutSeconds;
        if (OwnPaused(http, manager, sandboxID) is not null)
        {
            throw new SandboxStateConflictException($"sandbox '{sandboxID}' is paused; resume it (connect) before forking it");
        }
        await GetRunningOrExplainAsync(sandboxID, manager, store, http);
        var team = http.GetCaller().TeamId;
        var outcomes = await manager.ForkAsync(sandboxID, count, timeout, teams.LimitsOf(team), http.RequestAborted);
        var results = outcomes.Select(o => o.Sandbox is { } sandbox
            ? new ForkResultResponse(ToSandbox(sandbox, domain), null)
            : new ForkResultResponse(null, ApiErrorMiddleware.Map(o.Error!) ?? new ErrorResponse(StatusCodes.Status500InternalServerError, "fork failed"))).ToList();
        return Results.Json(results, ApiJsonContext.Default.ListForkResultResponse, statusCode: StatusCodes.Status201Created);
    }

    /// <summary>E2B's deprecated resume: 201 with the sandbox when it resumed it, 409 when it was running already.</summary>
    private static async Task<IResult> ResumeAsync(string sandboxID, HttpContext http, SandboxManager manager, ISandboxStore store, DaemonOptions options,
        SandboxDomain domain, TeamDirectory teams)
    {
        var request = await ReadBodyAsync(http, ApiJsonContext.Default.ConnectRequest, required: false);
        var timeout = CreateSandboxValidation.ValidateTimeout(request?.Timeout, options);
        if (OwnPaused(http, manager, sandboxID) is null)
        {
            await GetRunningOrExplainAsync(sandboxID, manager, store, http);
            throw new SandboxStateConflictException($"sandbox '{sandboxID}' is already running");
        }
        var team = http.GetCaller().TeamId;
        var (record, _) = await manager.ConnectOrResumeAsync(sandboxID, timeout, teams.LimitsOf(team), http.RequestAborted, keepMemory: request?.Memory ?? true);
        return Results.Json(ToSandbox(record, domain), ApiJsonContext.Default.SandboxResponse, statusCode: StatusCodes.Status201Created);
    }

    /// <summary>The caller's team's paused sandbox with this id, else null.</summary>
    private static SandboxRecord? OwnPaused(HttpContext http, SandboxManager manager, string sandboxId) =>
        manager.TryGetPaused(sandboxId, out var record) && record.TeamId == http.GetCaller().TeamId ? record : null;

    /// <summary>
    /// The caller's team's running sandbox, or a 404 that says what became of it when the store remembers. Another
    /// team's sandbox, running or ended, answers exactly as an id nobody ever had: no existence oracle.
    /// </summary>
    private static async Task<SandboxRecord> GetRunningOrExplainAsync(string sandboxId, SandboxManager manager, ISandboxStore store, HttpContext http)
    {
        var team = http.GetCaller().TeamId;
        if (manager.TryGetRunning(sandboxId, out var record) && record.TeamId == team)
        {
            return record;
        }
        // The ending slot is read before the record: a kill writes its record before it frees the slot, so a record
        // read after a free slot is the kill's own. Read the other way round, a kill that ended between the two reads
        // left a record still saying running and no slot, and the answer lost its reason (seen in CI under load).
        var ending = manager.TryGetEnding(sandboxId, out var reason) ? reason : null;
        // Another team's running sandbox takes the same path as an unknown id, store lookup included, so that not
        // even the time the answer takes tells the two apart.
        var ended = SandboxIds.IsWellFormed(sandboxId) ? await store.GetAsync(sandboxId, http.RequestAborted) : null;
        if (ended is null || ended.TeamId != team)
        {
            throw new UnknownSandboxException(sandboxId);
        }
        if (ending is not null)
        {
            throw new UnknownSandboxException(sandboxId, $"it is being killed ({ending})");
        }
        throw ended.State == SandboxState.Killed ? new UnknownSandboxException(sandboxId, $"it ended at {ended.EndedAt:O} ({ended.EndReason})") : new UnknownSandboxException(sandboxId);
    }

    /// <summary>A record of the caller's team exists (running or ended), else the same 404 as for an unknown id.</summary>
    private static async Task RequireRecordAsync(string sandboxId, ISandboxStore store, HttpContext http)
    {
        if (!SandboxIds.IsWellFormed(sandboxId) || await store.GetAsync(sandboxId, http.RequestAborted) is not { } record || record.TeamId != http.GetCaller().TeamId)
        {
            throw new UnknownSandboxException(sandboxId);
        }
    }

    /// <summary>
    /// The caller's team's running and paused sandboxes, for the lists: this daemon's from memory; in a cluster every
    /// node's, from the shared store, where each node writes its records (issue 17), so a list through any node shows
    /// them all. A dead node's sandboxes are not among them: the membership marks them lost.
    /// </summary>
    private static async Task<(IReadOnlyList<SandboxRecord> Running, IReadOnlyList<SandboxRecord> Paused)> OwnListedAsync(
        HttpContext http, SandboxManager manager, DaemonOptions options, ISandboxStore store)
    {
        var team = http.GetCaller().TeamId;
        if (options.Cluster is null)
        {
            return ([.. manager.Running.Where(r => r.TeamId == team)], [.. manager.Paused.Where(r => r.TeamId == team)]);
        }
        var records = (await store.ListAsync([SandboxState.Running, SandboxState.Paused], http.RequestAborted)).Where(r => r.TeamId == team).ToList();
        return ([.. records.Where(r => r.State == SandboxState.Running)], [.. records.Where(r => r.State == SandboxState.Paused)]);
    }

    /// <summary>Reads a JSON body of at most 1 MiB; malformed JSON and wrong types are a 400 naming where.</summary>
    internal static async Task<T?> ReadBodyAsync<T>(HttpContext http, JsonTypeInfo<T> type, bool required) where T : class
    {
        if (http.Request.ContentLength > MaxBodyBytes)
        {
            throw ApiRequestException.BadRequest($"request body larger than {MaxBodyBytes} bytes");
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await http.Request.Body.ReadAsync(chunk, http.RequestAborted)) > 0)
        {
            if (buffer.Length + read > MaxBodyBytes)
            {
                throw ApiRequestException.BadRequest($"request body larger than {MaxBodyBytes} bytes");
            }
            buffer.Write(chunk, 0, read);
        }
        if (buffer.Length == 0)
        {
            return required ? throw ApiRequestException.BadRequest("a JSON request body is required") : null;
        }
        T? value;
        try
        {
            value = JsonSerializer.Deserialize(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), type);
        }
        catch (JsonException ex)
        {
            throw ApiRequestException.BadRequest(ex.Path is { Length: > 1 } path
                ? $"invalid request body: malformed JSON or a value of the wrong type at {path}"
                : "invalid request body: expected a JSON object");
        }
        return value ?? (required ? throw ApiRequestException.BadRequest("invalid request body: expected a JSON object, got null") : null);
    }

    private static DateTimeOffset? ParseUnixSeconds(string? text, string name) =>
        string.IsNullOrEmpty(text) ? null
        : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var s) && s <= 253402300799
            ? DateTimeOffset.FromUnixTimeSeconds(s)
            : throw ApiRequestException.BadRequest($"invalid {name} '{text}': expected Unix seconds");

    private static DateTimeOffset? ParseUnixMilliseconds(string? text, string name) =>
        string.IsNullOrEmpty(text) ? null
        : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var ms) && ms <= 253402300799999
            ? DateTimeOffset.FromUnixTimeMilliseconds(ms)
            : throw ApiRequestException.BadRequest($"invalid {name} '{text}': expected Unix milliseconds");

    private static int ParseLogLimit(string? text, DaemonOptions options) =>
        string.IsNullOrEmpty(text) ? options.LogLinesPerSandbox
        : int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var limit)
            ? Math.Min(limit, options.LogLinesPerSandbox)
            : throw ApiRequestException.BadRequest($"invalid limit '{text}': expected a non-negative integer");

    internal static SandboxResponse ToSandbox(SandboxRecord r, SandboxDomain domain) =>
        new(r.TemplateId, r.SandboxId, r.Alias, ClientId, EnvdVersion, r.EnvdAccessToken, r.TrafficAccessToken, domain.Value);

    internal static SandboxDetailResponse ToDetail(SandboxRecord r, SandboxDomain domain) =>
        new(r.TemplateId, r.Alias, r.SandboxId, ClientId, r.StartedAt, r.EndAt, EnvdVersion, r.EnvdAccessToken, r.AllowInternetAccess,
            domain.Value, r.CpuCount, r.MemoryMB, r.DiskSizeMB, r.Metadata, StateName(r),
            new NetworkResponse(r.TrafficAccessToken is null),
            new LifecycleResponse(AutoResume: r.AutoPause && r.AutoResume, OnTimeout: r.AutoPause ? "pause" : "kill"),
            [], r.RuntimeName);

    internal static ListedSandboxResponse ToListed(SandboxRecord r) =>
        new(r.TemplateId, r.Alias, r.SandboxId, ClientId, r.StartedAt, r.EndAt, r.CpuCount, r.MemoryMB, r.DiskSizeMB, r.Metadata, StateName(r), EnvdVersion, [], r.RuntimeName);

    private static string StateName(SandboxRecord r) => r.State == SandboxState.Paused ? "paused" : "running";

    private static SandboxMetricResponse ToMetric(Runtimes.SandboxUsage u) =>
        new(u.Timestamp, u.Timestamp.ToUnixTimeSeconds(), u.CpuCount, u.CpuUsedPercent, u.MemoryUsedBytes, u.MemoryTotalBytes, 0, u.DiskUsedBytes, u.DiskTotalBytes);

    private static SandboxLogEntryResponse ToLogEntry(SandboxLogLine l) =>
        new(l.Timestamp, StateStore.LevelName(l.Level), l.Message, new Dictionary<string, string> { ["source"] = "paddockd" });
}
