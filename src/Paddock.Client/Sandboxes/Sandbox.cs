using System.Runtime.CompilerServices;
using Paddock.Client.Api;
using Paddock.Client.Envd;
using Paddock.Client.Http;

namespace Paddock.Client;

/// <summary>
/// A sandbox: an isolated Linux machine to run code in. Create one with <see cref="CreateAsync"/>, reach an existing
/// one with <see cref="ConnectAsync"/>; run commands through <see cref="Commands"/>, move files through
/// <see cref="Files"/>, drive terminals through <see cref="Pty"/>. <c>await using</c> kills it at the end of the
/// scope, unless <see cref="SandboxOptions.KillOnDispose"/> says otherwise.
/// </summary>
public sealed partial class Sandbox : IAsyncDisposable
{
    /// <summary>The template <see cref="CreateAsync"/> uses when none is named.</summary>
    public const string DefaultTemplate = "base";

    // The id E2B's SDK gives the sandbox of debug mode, where no control plane is asked.
    private const string DebugSandboxId = "debug_sandbox_id";

    private readonly EnvdClient _envd;
    private readonly bool _killOnDispose;
    private int _disposed;

    private Sandbox(string sandboxId, string? templateId, string? envdVersion, string? envdAccessToken, string? domain, ResolvedConnection connection, bool killOnDispose)
    {
        SandboxId = sandboxId;
        TemplateId = templateId;
        EnvdVersion = envdVersion;
        SandboxDomain = domain;
        Connection = connection;
        EnvdAccessToken = envdAccessToken;
        _killOnDispose = killOnDispose;
        var endpoint = new EnvdEndpoint(connection.EnvdUrl(sandboxId, domain, ConnectionOptions.EnvdPort), sandboxId, ConnectionOptions.EnvdPort, envdAccessToken);
        _envd = new EnvdClient(connection, endpoint);
        Commands = new SandboxCommands(_envd);
        Files = new Filesystem(_envd, envdVersion);
        Pty = new Pty(_envd, Commands);
        Code = new SandboxCode(connection, new EnvdEndpoint(connection.EnvdUrl(sandboxId, domain, SandboxCode.Port), sandboxId, SandboxCode.Port, envdAccessToken));
    }

    /// <summary>The sandbox's id.</summary>
    public string SandboxId { get; }

    /// <summary>The access token of a secure sandbox (sent as <c>X-Access-Token</c>), for other clients of its ports.</summary>
    internal string? EnvdAccessToken { get; }

    /// <summary>The template it was created from, when known (not after <see cref="ConnectAsync"/> to some servers).</summary>
    public string? TemplateId { get; }

    /// <summary>The version of envd in the sandbox, when the control plane said.</summary>
    public string? EnvdVersion { get; }

    /// <summary>The domain the sandbox is served under, when the control plane said.</summary>
    public string? SandboxDomain { get; }

    /// <summary>The connection settings in use.</summary>
    public ResolvedConnection Connection { get; }

    /// <summary>Commands: run, start in the background, attach, list, kill.</summary>
    public SandboxCommands Commands { get; }

    /// <summary>The filesystem: read, write, list, watch.</summary>
    public Filesystem Files { get; }

    /// <summary>Interactive terminals.</summary>
    public Pty Pty { get; }

    /// <summary>The code interpreter (sandboxes of the <c>code-interpreter</c> template): stateful cells with rich results.</summary>
    public SandboxCode Code { get; }

    /// <summary>
    /// Creates a sandbox from a template (default <see cref="DefaultTemplate"/>) and returns once it runs.
    /// </summary>
    public static async Task<Sandbox> CreateAsync(string? template = null, SandboxOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new SandboxOptions();
        var connection = (options.Connection ?? new ConnectionOptions()).Resolve();
        template ??= DefaultTemplate;
        if (connection.Debug)
        {
            return new Sandbox(DebugSandboxId, template, null, null, null, connection, options.KillOnDispose);
        }
        using var api = new ApiClient(connection);
        if (options.OnTimeout != OnTimeout.Pause && (options.AutoResume || options.PauseKeepsMemory is not null))
        {
            throw new ArgumentException("AutoResume and PauseKeepsMemory need OnTimeout = OnTimeout.Pause", nameof(options));
        }
        if (options.AutoResume && options.PauseKeepsMemory == false)
        {
            throw new ArgumentException("AutoResume is not valid with PauseKeepsMemory = false: a filesystem-only pause is resumed by ConnectAsync only", nameof(options));
        }
        var created = await api.CreateSandboxAsync(new NewSandboxDto
        {
            AutoPause = options.OnTimeout == OnTimeout.Pause ? true : null,
            AutoPauseMemory = options.PauseKeepsMemory,
            AutoResume = options.AutoResume ? new AutoResumeDto { Enabled = true } : null,
            TemplateId = template,
            Timeout = Seconds(options.Timeout ?? SandboxOptions.DefaultTimeout),
            Metadata = options.Metadata,
            EnvVars = options.Envs,
            Secure = options.Secure,
            AllowInternetAccess = options.AllowInternetAccess,
            Network = options.AllowOut is null && options.DenyOut is null ? null : new NetworkDto { AllowOut = options.AllowOut, DenyOut = options.DenyOut },
            Isolation = options.Isolation,
            VolumeMounts = options.VolumeMounts?.Select(kv => new VolumeMountDto { Name = kv.Value, Path = kv.Key }).ToArray(),
        }, cancellationToken).ConfigureAwait(false);
        var id = created.SandboxId ?? throw new SandboxException("the control plane created a sandbox but sent no sandboxID");
        return new Sandbox(id, created.TemplateId ?? template, created.EnvdVersion, created.EnvdAccessToken, created.Domain, connection, options.KillOnDispose);
    }

    /// <summary>
    /// A client for envd of one sandbox without asking the control plane (tests reach a bare agent this way, the way
    /// debug mode does, but with an access token).
    /// </summary>
    internal static Sandbox ForEnvd(ConnectionOptions connection, string sandboxId, string? envdAccessToken = null, string? envdVersion = null) =>
        new(sandboxId, null, envdVersion, envdAccessToken, null, connection.Resolve(), killOnDispose: false);

    /// <summary>
    /// Connects to a running (or paused: it is resumed) sandbox. Throws <see cref="SandboxNotFoundException"/> when
    /// there is no such sandbox.
    /// </summary>
    public static async Task<Sandbox> ConnectAsync(string sandboxId, SandboxConnectOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sandboxId);
        options ??= new SandboxConnectOptions();
        var connection = (options.Connection ?? new ConnectionOptions()).Resolve();
        if (connection.Debug)
        {
            return new Sandbox(sandboxId, null, null, null, null, connection, options.KillOnDispose);
        }
        using var api = new ApiClient(connection);
        var sandbox = await api.ConnectSandboxAsync(sandboxId, Seconds(options.Timeout ?? SandboxOptions.DefaultTimeout), cancellationToken).ConfigureAwait(false);
        return new Sandbox(sandbox.SandboxId ?? sandboxId, sandbox.TemplateId, sandbox.EnvdVersion, sandbox.EnvdAccessToken, sandbox.Domain, connection, options.KillOnDispose);
    }

    /// <summary>
    /// The sandboxes the API key can see, fetched a page at a time (GET /v2/sandboxes) as the iteration goes on.
    /// </summary>
    public static async IAsyncEnumerable<SandboxInfo> ListAsync(SandboxListFilter? filter = null, ConnectionOptions? connection = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        filter ??= new SandboxListFilter();
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        string? next = null;
        // Bounded: a server that keeps handing out the same token would otherwise loop forever.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        do
        {
            var (items, token) = await api.ListSandboxesAsync(filter, next, cancellationToken).ConfigureAwait(false);
            foreach (var item in items)
            {
                yield return ToInfo(item);
            }
            if (token is not null && !seen.Add(token))
            {
                throw new SandboxException($"the control plane repeated the page token '{token}' while listing sandboxes");
            }
            next = token;
        }
        while (next is not null);
    }

    /// <summary>Kills a sandbox; false when it did not exist.</summary>
    public static async Task<bool> KillAsync(string sandboxId, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sandboxId);
        var resolved = (connection ?? new ConnectionOptions()).Resolve();
        if (resolved.Debug)
        {
            return true; // debug mode has no control plane, as in E2B's SDK
        }
        using var api = new ApiClient(resolved);
        return await api.KillSandboxAsync(sandboxId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Pauses a sandbox: on a tier that keeps memory (gVisor) its processes stop where they are and go on after a
    /// resume; <paramref name="keepMemory"/> false keeps only its filesystem (a resume boots it afresh). Null: what its
    /// tier keeps. Returns false when it was paused already. A tier that cannot keep memory refuses
    /// <paramref name="keepMemory"/> true with an <see cref="InvalidArgumentException"/> naming the tier.
    /// </summary>
    public static async Task<bool> PauseAsync(string sandboxId, bool? keepMemory = null, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sandboxId);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        return await api.PauseSandboxAsync(sandboxId, keepMemory, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Forks a running sandbox (E2B's fork): <paramref name="count"/> (1-100) new sandboxes, each with the source's
    /// memory, processes and files at one instant and its own id, tokens and deadline (<paramref name="timeout"/> from
    /// when it runs; the server's default when null), while the source keeps running. One entry per copy, in order:
    /// the running copy, or the <see cref="SandboxException"/> that says why it did not start (each copy succeeds or
    /// fails on its own). Throws when no copy was attempted (unknown or paused source, a tier that cannot fork).
    /// </summary>
    public static async Task<IReadOnlyList<ForkResult>> ForkAsync(string sandboxId, int count = 1, TimeSpan? timeout = null, ConnectionOptions? connection = null,
        bool killOnDispose = true, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sandboxId);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, 100);
        var resolved = (connection ?? new ConnectionOptions()).Resolve();
        using var api = new ApiClient(resolved);
        var results = await api.ForkSandboxAsync(sandboxId, count, timeout is { } t ? Seconds(t) : null, cancellationToken).ConfigureAwait(false);
        return [.. results.Select(r => r.Sandbox is { SandboxId: { } id } dto
            ? new ForkResult(new Sandbox(id, dto.TemplateId, dto.EnvdVersion, dto.EnvdAccessToken, dto.Domain, resolved, killOnDispose), null)
            : new ForkResult(null, ApiClient.ErrorFor((System.Net.HttpStatusCode)(r.Error?.Code ?? 500), r.Error?.Message ?? "the fork did not start", null, null)))];
    }

    /// <summary>Forks this sandbox (see the static <see cref="ForkAsync(string, int, TimeSpan?, ConnectionOptions?, bool, CancellationToken)"/>).</summary>
    public Task<IReadOnlyList<ForkResult>> ForkAsync(int count = 1, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        ForkAsync(SandboxId, count, timeout, ApiOptions(), killOnDispose: true, cancellationToken);

    /// <summary>Resumes a paused sandbox (or connects to a running one): E2B's connect, under the same id and tokens.</summary>
    public static Task<Sandbox> ResumeAsync(string sandboxId, SandboxConnectOptions? options = null, CancellationToken cancellationToken = default) =>
        ConnectAsync(sandboxId, options, cancellationToken);

    /// <summary>Pauses this sandbox (see the static <see cref="PauseAsync(string, bool?, ConnectionOptions?, CancellationToken)"/>).</summary>
    public Task<bool> PauseAsync(bool? keepMemory = null, CancellationToken cancellationToken = default) =>
        PauseAsync(SandboxId, keepMemory, ApiOptions(), cancellationToken);

    /// <summary>Resumes this sandbox when it is paused (a no-op connect when it runs); its deadline becomes <paramref name="timeout"/> from now.</summary>
    public async Task ResumeAsync(TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        using var api = new ApiClient(ApiOptions().Resolve());
        await api.ConnectSandboxAsync(SandboxId, Seconds(timeout ?? SandboxOptions.DefaultTimeout), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sets how long a sandbox lives from now (it may shorten or extend it).</summary>
    public static async Task SetTimeoutAsync(string sandboxId, TimeSpan timeout, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sandboxId);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        await api.SetTimeoutAsync(sandboxId, Seconds(timeout), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>What the control plane knows about a sandbox.</summary>
    public static async Task<SandboxInfo> GetInfoAsync(string sandboxId, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sandboxId);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        return ToInfo(await api.GetSandboxAsync(sandboxId, cancellationToken).ConfigureAwait(false));
    }

    /// <summary>A sandbox's resource use over time (optionally only between <paramref name="start"/> and <paramref name="end"/>).</summary>
    public static async Task<IReadOnlyList<SandboxMetrics>> GetMetricsAsync(string sandboxId, DateTimeOffset? start = null, DateTimeOffset? end = null, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sandboxId);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        var metrics = await api.GetMetricsAsync(sandboxId, start, end, cancellationToken).ConfigureAwait(false);
        return metrics.Select(m => new SandboxMetrics
        {
            Timestamp = m.TimestampUnix is { } unix ? DateTimeOffset.FromUnixTimeSeconds(unix) : m.Timestamp ?? default,
            CpuCount = m.CpuCount,
            CpuUsedPercent = m.CpuUsedPct,
            MemoryUsed = m.MemUsed,
            MemoryTotal = m.MemTotal,
            MemoryCache = m.MemCache,
            DiskUsed = m.DiskUsed,
            DiskTotal = m.DiskTotal,
        }).ToArray();
    }

    /// <summary>A sandbox's log entries (GET /v2/sandboxes/{id}/logs), from <paramref name="since"/> on, at most <paramref name="limit"/>.</summary>
    public static async Task<IReadOnlyList<SandboxLogEntry>> GetLogsAsync(string sandboxId, DateTimeOffset? since = null, int? limit = null, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sandboxId);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        var logs = await api.GetLogsAsync(sandboxId, since, limit, cancellationToken).ConfigureAwait(false);
        return (logs.Logs ?? []).Select(l => new SandboxLogEntry
        {
            Timestamp = l.Timestamp,
            Level = l.Level ?? "info",
            Message = l.Message ?? "",
            Fields = l.Fields ?? [],
        }).ToArray();
    }

    /// <summary>
    /// Saves a running sandbox's filesystem (everything it changed, added or deleted) as a new template and returns
    /// the template's id, which <see cref="CreateAsync"/> takes like any template. The sandbox keeps running.
    /// With <paramref name="name"/>, the template can also be created by that name (a later snapshot with the same
    /// name takes it over).
    /// </summary>
    public static async Task<string> SnapshotFilesystemAsync(string sandboxId, string? name = null, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sandboxId);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        var snapshot = await api.CreateSnapshotAsync(sandboxId, name, cancellationToken).ConfigureAwait(false);
        return snapshot.SnapshotId is { Length: > 0 } id
            ? id
            : throw new SandboxException("the server answered the snapshot without a snapshotID");
    }

    /// <summary>Saves this sandbox's filesystem as a new template and returns its id (see the static overload).</summary>
    public Task<string> SnapshotFilesystemAsync(string? name = null, CancellationToken cancellationToken = default) =>
        SnapshotFilesystemAsync(SandboxId, name, ApiOptions(), cancellationToken);

    /// <summary>Kills this sandbox; false when it was already gone.</summary>
    public Task<bool> KillAsync(CancellationToken cancellationToken = default) => KillAsync(SandboxId, ApiOptions(), cancellationToken);

    /// <summary>Sets how long this sandbox lives from now.</summary>
    public Task SetTimeoutAsync(TimeSpan timeout, CancellationToken cancellationToken = default) => SetTimeoutAsync(SandboxId, timeout, ApiOptions(), cancellationToken);

    /// <summary>What the control plane knows about this sandbox.</summary>
    public Task<SandboxInfo> GetInfoAsync(CancellationToken cancellationToken = default) => GetInfoAsync(SandboxId, ApiOptions(), cancellationToken);

    /// <summary>This sandbox's resource use over time.</summary>
    public Task<IReadOnlyList<SandboxMetrics>> GetMetricsAsync(DateTimeOffset? start = null, DateTimeOffset? end = null, CancellationToken cancellationToken = default) =>
        GetMetricsAsync(SandboxId, start, end, ApiOptions(), cancellationToken);

    /// <summary>Whether envd in the sandbox answers its health check (false when the sandbox is gone).</summary>
    public async Task<bool> IsRunningAsync(CancellationToken cancellationToken = default)
    {
        using var deadline = HttpTransport.StartDeadline(Connection.RequestTimeout, cancellationToken);
        var uri = _envd.Endpoint.Url("health");
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            _envd.Endpoint.Apply(request, null);
            using var response = await _envd.Http.SendAsync(request, deadline.Token).ConfigureAwait(false);
            if (response.IsSuccessStatusCode)
            {
                return true;
            }
            if ((int)response.StatusCode is 502 or 404)
            {
                return false;
            }
            throw new SandboxException($"the sandbox's health check answered {(int)response.StatusCode}") { StatusCode = (int)response.StatusCode };
        }
        catch (Exception ex) when (HttpTransport.IsTransportFailure(ex))
        {
            throw HttpTransport.Translate(ex, uri, cancellationToken, deadline, "checking the sandbox's health");
        }
    }

    /// <summary>
    /// The host at which a port of the sandbox is reachable from outside: <c>{port}-{sandboxId}.{domain}</c>
    /// (<c>localhost:{port}</c> in debug mode).
    /// </summary>
    public string GetHost(int port)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(port, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        return Connection.Host(SandboxId, SandboxDomain, port);
    }

    /// <summary>Kills the sandbox if the options said so (<see cref="SandboxOptions.KillOnDispose"/>), and releases the client.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        try
        {
            if (_killOnDispose && !Connection.Debug)
            {
                using var limit = new CancellationTokenSource(Connection.RequestTimeout == Timeout.InfiniteTimeSpan ? TimeSpan.FromSeconds(60) : Connection.RequestTimeout);
                try
                {
                    await KillAsync(limit.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is SandboxException or TimeoutException or OperationCanceledException)
                {
                    // Dispose must not throw; a sandbox that could not be killed here still ends at its timeout.
                    // Callers that need to know call KillAsync themselves.
                }
            }
        }
        finally
        {
            _envd.Dispose();
        }
    }

    private ConnectionOptions ApiOptions() => new()
    {
        ApiKey = Connection.ApiKey,
        ApiUrl = Connection.ApiUrl,
        SandboxUrl = Connection.SandboxUrl,
        Domain = Connection.Domain,
        Debug = Connection.Debug,
        RequestTimeout = Connection.RequestTimeout,
        HttpHandler = Connection.HttpHandler,
    };

    private static int Seconds(TimeSpan timeout)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(timeout, TimeSpan.Zero);
        return (int)Math.Min(int.MaxValue, Math.Ceiling(timeout.TotalSeconds));
    }

    internal static SandboxInfo ToInfo(SandboxDetailDto d) => new()
    {
        SandboxId = d.SandboxId ?? "",
        TemplateId = d.TemplateId ?? "",
        Alias = d.Alias,
        StartedAt = d.StartedAt ?? default,
        EndAt = d.EndAt ?? default,
        State = string.Equals(d.State, "paused", StringComparison.OrdinalIgnoreCase) ? SandboxState.Paused : SandboxState.Running,
        CpuCount = d.CpuCount,
        MemoryMB = d.MemoryMB,
        DiskSizeMB = d.DiskSizeMB,
        Metadata = d.Metadata ?? [],
        EnvdVersion = d.EnvdVersion,
        Isolation = d.Isolation,
    };
}
