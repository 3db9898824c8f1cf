namespace Paddock.Client;

/// <summary>
/// Where the control plane and the sandboxes are, and how to authenticate. Unset properties come from the
/// environment when the options are used (see <see cref="Resolve()"/>): Paddock's <c>PADDOCK_URL</c> and
/// <c>PADDOCK_API_KEY</c> first, then E2B's <c>E2B_API_URL</c>, <c>E2B_SANDBOX_URL</c>, <c>E2B_API_KEY</c>,
/// <c>E2B_DOMAIN</c> and <c>E2B_DEBUG</c>.
/// </summary>
public sealed record ConnectionOptions
{
    /// <summary>The address a Paddock daemon listens on when nothing else is configured.</summary>
    public const string DefaultUrl = "http://127.0.0.1:3000";

    /// <summary>The port of envd, the in-sandbox daemon, in every sandbox.</summary>
    public const int EnvdPort = 49983;

    /// <summary>
    /// The API key sent as <c>X-API-Key</c>. Default: <c>PADDOCK_API_KEY</c>, else <c>E2B_API_KEY</c>; an empty
    /// string means no key (the environment is not consulted).
    /// </summary>
    public string? ApiKey { get; init; }

    /// <summary>
    /// The control plane's base URL. Default: <c>PADDOCK_URL</c>, else <c>E2B_API_URL</c>, else
    /// <c>https://api.{Domain}</c> when a domain is configured, else <see cref="DefaultUrl"/>
    /// (<c>http://localhost:3000</c> in debug mode, as E2B's SDK).
    /// </summary>
    public Uri? ApiUrl { get; init; }

    /// <summary>
    /// One URL for all sandbox traffic; the target sandbox and port travel in the <c>E2b-Sandbox-Id</c> and
    /// <c>E2b-Sandbox-Port</c> headers. Default: <c>E2B_SANDBOX_URL</c>, else <c>PADDOCK_URL</c>, else the
    /// <see cref="ApiUrl"/> when no domain is configured. When it resolves to null, sandboxes are reached at
    /// <c>https://{port}-{sandboxId}.{domain}</c>.
    /// </summary>
    public Uri? SandboxUrl { get; init; }

    /// <summary>The domain sandboxes are served under. Default: <c>E2B_DOMAIN</c>.</summary>
    public string? Domain { get; init; }

    /// <summary>
    /// Debug mode (<c>E2B_DEBUG=true</c>): no control plane; envd is reached at <c>http://localhost:49983</c>
    /// (or at <see cref="SandboxUrl"/> when set), and create/connect only build the client.
    /// </summary>
    public bool? Debug { get; init; }

    /// <summary>
    /// The limit for one request: a unary call, or the start of a stream. Default 60 seconds (as E2B's SDKs);
    /// <see cref="Timeout.InfiniteTimeSpan"/> for none. Passing it raises <see cref="SandboxTimeoutException"/>.
    /// </summary>
    public TimeSpan? RequestTimeout { get; init; }

    /// <summary>
    /// The handler HTTP requests go through; null: one shared <see cref="SocketsHttpHandler"/>. The SDK never
    /// disposes a handler it is given.
    /// </summary>
    public HttpMessageHandler? HttpHandler { get; init; }

    /// <summary>Reads the environment now and returns options in which every property is set.</summary>
    public ResolvedConnection Resolve() => ResolvedConnection.From(this, Environment.GetEnvironmentVariable);

    /// <summary>Applies the given environment (a variable lookup) instead of the process's; for hosts and tests.</summary>
    public ResolvedConnection Resolve(Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        return ResolvedConnection.From(this, environment);
    }
}

/// <summary><see cref="ConnectionOptions"/> with the environment applied: what the SDK actually uses.</summary>
public sealed record ResolvedConnection
{
    private static readonly TimeSpan DefaultRequestTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The API key, or null when none is configured (the control plane will refuse most calls).</summary>
    public required string? ApiKey { get; init; }

    /// <summary>The control plane's base URL.</summary>
    public required Uri ApiUrl { get; init; }

    /// <summary>One URL for all sandbox traffic, or null to use <c>{port}-{id}.{domain}</c> hosts.</summary>
    public required Uri? SandboxUrl { get; init; }

    /// <summary>The domain sandboxes are served under, or null.</summary>
    public required string? Domain { get; init; }

    /// <summary>Whether debug mode is on.</summary>
    public required bool Debug { get; init; }

    /// <summary>The limit for one request.</summary>
    public required TimeSpan RequestTimeout { get; init; }

    /// <summary>The handler HTTP requests go through, or null for the shared one.</summary>
    public HttpMessageHandler? HttpHandler { get; init; }

    internal static ResolvedConnection From(ConnectionOptions o, Func<string, string?> env)
    {
        string? Env(string name) => env(name) is { Length: > 0 } v ? v.Trim() : null;

        var debug = o.Debug ?? string.Equals(Env("E2B_DEBUG"), "true", StringComparison.OrdinalIgnoreCase);
        var domain = o.Domain ?? Env("E2B_DOMAIN");
        var paddockUrl = ParseUrl(Env("PADDOCK_URL"), "PADDOCK_URL");
        var apiUrl = o.ApiUrl
            ?? paddockUrl
            ?? ParseUrl(Env("E2B_API_URL"), "E2B_API_URL")
            ?? (debug ? new Uri("http://localhost:3000") : domain is not null ? new Uri($"https://api.{domain}") : new Uri(ConnectionOptions.DefaultUrl));
        var sandboxUrl = o.SandboxUrl
            ?? ParseUrl(Env("E2B_SANDBOX_URL"), "E2B_SANDBOX_URL")
            ?? paddockUrl
            // Nothing names a sandbox domain: the only server known is the control plane, which (as paddockd does)
            // also proxies sandbox traffic routed by the E2b-Sandbox-* headers.
            ?? (domain is null && !debug ? apiUrl : null);
        var timeout = o.RequestTimeout ?? DefaultRequestTimeout;
        if (timeout <= TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(o), timeout, "RequestTimeout must be positive or Timeout.InfiniteTimeSpan");
        }
        return new ResolvedConnection
        {
            ApiKey = o.ApiKey is { } key ? (key.Length > 0 ? key : null) : Env("PADDOCK_API_KEY") ?? Env("E2B_API_KEY"),
            ApiUrl = apiUrl,
            SandboxUrl = sandboxUrl,
            Domain = domain,
            Debug = debug,
            RequestTimeout = timeout,
            HttpHandler = o.HttpHandler,
        };
    }

    private static Uri? ParseUrl(string? value, string name)
    {
        if (value is null)
        {
            return null;
        }
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"{name} is not an http(s) URL: '{value}'");
        }
        return uri;
    }

    /// <summary>The base URL of envd in a sandbox, as E2B's SDK computes it.</summary>
    internal Uri EnvdUrl(string sandboxId, string? sandboxDomain, int port)
    {
        if (SandboxUrl is not null)
        {
            return SandboxUrl;
        }
        if (Debug)
        {
            return new Uri($"http://localhost:{port}");
        }
        return new Uri($"https://{Host(sandboxId, sandboxDomain, port)}");
    }

    /// <summary><c>{port}-{sandboxId}.{domain}</c>, or <c>localhost:{port}</c> in debug mode.</summary>
    internal string Host(string sandboxId, string? sandboxDomain, int port)
    {
        if (Debug)
        {
            return $"localhost:{port}";
        }
        var domain = sandboxDomain ?? Domain ?? SandboxUrl?.Authority ?? ApiUrl.Authority;
        return $"{port}-{sandboxId}.{domain}";
    }
}
