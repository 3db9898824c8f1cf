using System.Globalization;
using Paddock.Daemon.Pools;
using ClusterSettings = Paddock.Daemon.Cluster.ClusterSettings;

namespace Paddock.Daemon;

/// <summary>
/// paddockd's settings: from its command line, else from <c>PADDOCK_*</c> environment variables, else the defaults
/// below (which the README states).
/// </summary>
internal sealed record DaemonOptions
{
    public const string DefaultListen = "http://127.0.0.1:3000";

    /// <summary>Where the control plane and the sandbox proxy listen (one listener for both).</summary>
    public Uri Listen { get; init; } = new(DefaultListen);

    /// <summary>The state directory: the SQLite database and the first API key.</summary>
    public string StateDir { get; init; } = "/var/lib/paddock";

    /// <summary>Built templates (root filesystems); null: <c>{StateDir}/templates</c>. Several daemons may share one.</summary>
    public string? TemplatesDir { get; init; }

    /// <summary>
    /// The domain sandbox hosts are named under (<c>{port}-{sandboxId}.{domain}</c>, what the SDK's <c>getHost</c> returns).
    /// Null: <c>localhost:{the port paddockd listens on}</c>, which resolves wherever <c>*.localhost</c> is loopback.
    /// </summary>
    public string? Domain { get; init; }

    /// <summary>A key accepted besides the stored ones (PADDOCK_API_KEY), for deployments that hand out their own.</summary>
    public string? ExtraApiKey { get; init; }

    public int DefaultTimeoutSeconds { get; init; } = 300;

    /// <summary>The longest timeout a create or POST /timeout may ask for (E2B Pro's 24 hours).</summary>
    public int MaxTimeoutSeconds { get; init; } = 24 * 60 * 60;

    /// <summary>Sandboxes alive or starting at once; more get 429 as E2B's concurrency limit does.</summary>
    public int MaxSandboxes { get; init; } = 100;

    /// <summary>
    /// Paused sandboxes one team may keep (a team's own limit overrides it). They hold only disk, so they do not count
    /// against <see cref="MaxSandboxes"/> or a team's running limits.
    /// </summary>
    public int MaxPausedPerTeam { get; init; } = 100;

    public int DefaultCpuCount { get; init; } = 2;

    public int DefaultMemoryMB { get; init; } = 512;

    public int DefaultDiskSizeMB { get; init; } = 1024;

    public int MaxPids { get; init; } = 1024;

    /// <summary>The size of a volume whose create names none (Volumes/: a sparse ext4 image, so a hard limit).</summary>
    public int VolumeSizeMB { get; init; } = 1024;

    /// <summary>The largest size a volume create may ask for (paddock's <c>sizeMB</c>).</summary>
    public int MaxVolumeSizeMB { get; init; } = 10 * 1024;

    /// <summary>Volumes one team may have.</summary>
    public int MaxVolumesPerTeam { get; init; } = 20;

    /// <summary>The sum of one team's volume sizes (images are sparse, so this bounds what they can take of the host's disk).</summary>
    public int MaxVolumeTotalMB { get; init; } = 50 * 1024;

    /// <summary>How long the records and logs of ended sandboxes are kept.</summary>
    public TimeSpan RecordRetention { get; init; } = TimeSpan.FromDays(7);

    /// <summary>Lines kept per sandbox log; older ones are dropped.</summary>
    public int LogLinesPerSandbox { get; init; } = 1000;

    /// <summary>How often the daemon looks for sandboxes that died on their own and purges old records.</summary>
    public TimeSpan HousekeepingPeriod { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A template to build (or find cached) before the listener opens, so the first create does not wait for it.</summary>
    public string? PrepareTemplate { get; init; }

    /// <summary>How long the runtime may take to start a sandbox before the create fails.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Warm pools per template (default none: every create starts a sandbox).</summary>
    public PoolSettings Pools { get; init; } = PoolSettings.None;

    /// <summary>The OCI registry a build's <c>fromImage(ref)</c> pulls from (http or https); null: none, only imported images.</summary>
    public Uri? ImageRegistry { get; init; }

    /// <summary>A PEM CA certificate an https <see cref="ImageRegistry"/> is verified against instead of the system's roots.</summary>
    public string? ImageRegistryCa { get; init; }

    /// <summary>The most an imported or pulled image may unpack to, in MiB.</summary>
    public int MaxImageMB { get; init; } = 8192;

    /// <summary>
    /// How long a sandbox with nothing but its agent running and no call in flight stays awake before the idle freezer
    /// (Sandboxes/IdleFreezer.cs) freezes it; zero: never freeze. An idle agent otherwise costs ~20-40 ms of CPU a
    /// minute (Kestrel's 1 s heartbeat), 0.65 of this host's 2 cores for 1,000 of them (issue 6).
    /// </summary>
    public TimeSpan FreezeAfter { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A PEM certificate (chain) to serve the API and the sandbox hosts over TLS with; reloaded when it changes.</summary>
    public string? TlsCertPath { get; init; }

    /// <summary>The PEM private key of <see cref="TlsCertPath"/>.</summary>
    public string? TlsKeyPath { get; init; }

    /// <summary>Serve TLS with a CA and wildcard certificate this daemon makes in <c>{StateDir}/tls/</c> (Tls/SelfSignedCertificates.cs).</summary>
    public bool TlsSelfSigned { get; init; }

    /// <summary>Whether the listener speaks TLS (and HTTP/2 by ALPN).</summary>
    public bool Tls => TlsSelfSigned || TlsCertPath is not null;

    /// <summary>How often each running sandbox's resource use is sampled into its history (Sandboxes/MetricsHistory.cs); zero: never.</summary>
    public TimeSpan MetricsInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Samples kept per sandbox (120 at 5 s: the last 10 minutes).</summary>
    public int MetricsSamples { get; init; } = 120;

    /// <summary>
    /// The isolation tier a sandbox runs on when neither its create, its team nor its template chose one; null: the first
    /// tier registered (runc). Checked against the tiers the daemon has when it starts.
    /// </summary>
    public string? Isolation { get; init; }

    /// <summary>
    /// The state store: null for SQLite in <c>{StateDir}/paddock.db</c> (the default), else an Npgsql connection string
    /// parsed from <c>--store postgres://…</c> (Store/PostgresConnectionString.cs).
    /// </summary>
    public string? PostgresConnectionString { get; init; }

    /// <summary>Cluster mode (<c>--cluster</c>, Cluster/ClusterSettings.cs); null: a single machine.</summary>
    public ClusterSettings? Cluster { get; init; }

    // The cluster options as given, turned into Cluster once all are read (Parse).
    private bool _clusterEnabled;
    private string? _nodeId;
    private System.Net.IPAddress? _advertise;
    private int? _clusterPort;
    private string? _clusterId;
    private TimeSpan? _clusterProbeTimeout;

    /// <summary>Console log lines as plain text (one line per event) or as one JSON object per line.</summary>
    public LogFormat LogFormat { get; init; } = LogFormat.Text;

    /// <summary>Whether <c>GET /metrics</c> serves Prometheus text (and the daemon counts for it at all).</summary>
    public bool MetricsEnabled { get; init; } = true;

    /// <summary>
    /// Whether a template with a start command is checkpointed once after its ready check on a tier that restores
    /// memory, and its creates there restore that (Templates/StartImages.cs); off: every create runs the command.
    /// </summary>
    public bool StartImages { get; init; } = true;

    /// <summary>Where OTLP/HTTP traces go (e.g. <c>http://collector:4318</c>); null: no exporter, no spans recorded.</summary>
    public Uri? OtlpEndpoint { get; init; }

    /// <summary>
    /// Audit events kept per sandbox (Audit/AuditTrail.cs); 0 turns the audit trail off. Past the bound the first half
    /// and the newest half are kept and the ones between are dropped and counted.
    /// </summary>
    public int AuditMaxEventsPerSandbox { get; init; } = 10_000;

    /// <summary>How long audit events are kept, counted from when they happened (sandbox alive or not).</summary>
    public TimeSpan AuditRetention { get; init; } = TimeSpan.FromDays(30);

    public static string Usage => """
        usage: paddockd [options]
          --listen URL              where to listen, API and sandbox traffic (default http://127.0.0.1:3000; env PADDOCK_LISTEN)
          --state-dir DIR           database and first API key (default /var/lib/paddock; env PADDOCK_STATE_DIR)
          --templates-dir DIR       built templates (default STATE-DIR/templates; env PADDOCK_TEMPLATES_DIR)
          --domain DOMAIN           sandbox hosts are {port}-{id}.DOMAIN (default localhost:PORT; env PADDOCK_DOMAIN)
          --default-timeout SECS    sandbox lifetime when the create names none (default 300; env PADDOCK_DEFAULT_TIMEOUT)
          --max-timeout SECS        longest lifetime a client may ask for (default 86400; env PADDOCK_MAX_TIMEOUT)
          --max-sandboxes N         sandboxes at once (default 100; env PADDOCK_MAX_SANDBOXES)
          --max-paused-per-team N   paused sandboxes a team may keep (default 100; env PADDOCK_MAX_PAUSED_PER_TEAM)
          --cpus N                  CPUs per sandbox unless the create says (default 2; env PADDOCK_CPUS)
          --memory-mb N             memory per sandbox unless the create says (default 512; env PADDOCK_MEMORY_MB)
          --disk-mb N               writable disk per sandbox unless the create says (default 1024; env PADDOCK_DISK_MB)
          --max-pids N              processes per sandbox (default 1024; env PADDOCK_MAX_PIDS)
          --prepare-template NAME   build or find NAME (e.g. base) before listening (env PADDOCK_PREPARE_TEMPLATE)
          --pool TEMPLATE=N[,...]   keep N sandboxes of TEMPLATE started ahead for creates (default none; env PADDOCK_POOL)
          --pool-refill N           pool sandboxes starting at once (default 2; env PADDOCK_POOL_REFILL)
          --image-registry URL      OCI registry that fromImage(ref) pulls from (default none; env PADDOCK_IMAGE_REGISTRY)
          --image-registry-ca FILE  PEM CA for an https image registry (env PADDOCK_IMAGE_REGISTRY_CA)
          --max-image-mb N          largest image an import or pull may unpack to (default 8192; env PADDOCK_MAX_IMAGE_MB)
          --freeze-after SECS       freeze a sandbox idle this long with only its agent running; 0: never (default 30; env PADDOCK_FREEZE_AFTER)
          --tls-cert FILE           serve HTTPS (and HTTP/2) with this PEM certificate chain, reloaded when it changes (env PADDOCK_TLS_CERT)
          --tls-key FILE            the certificate's PEM private key (env PADDOCK_TLS_KEY)
          --tls-self-signed         serve HTTPS with a CA and wildcard certificate made in STATE-DIR/tls (env PADDOCK_TLS_SELF_SIGNED=true);
                                    the domain then defaults to paddock.localhost:PORT
          --metrics-interval SECS   sample each sandbox's resource use this often for getMetrics; 0: never (default 5; env PADDOCK_METRICS_INTERVAL)
          --metrics-samples N       samples kept per sandbox (default 120; env PADDOCK_METRICS_SAMPLES)
          --isolation TIER          tier of sandboxes whose create, team and template choose none: runc or gvisor (default runc; env PADDOCK_ISOLATION)
          --store sqlite|URI        state store: sqlite ({state-dir}/paddock.db, the default) or postgres://user:password@host:port/db (env PADDOCK_STORE)
          --cluster                 run as one node of a cluster sharing the PostgreSQL store (env PADDOCK_CLUSTER=true; needs --store postgres://)
          --node-id ID              this node's stable identity in the cluster (default the host name; env PADDOCK_NODE_ID)
          --advertise IP            the address other nodes reach this one at (default the --listen address; env PADDOCK_ADVERTISE)
          --cluster-port N          the Orleans silo-to-silo port on the advertised address (default 11111; env PADDOCK_CLUSTER_PORT)
          --cluster-id NAME         the cluster's name in the store (default paddock; env PADDOCK_CLUSTER_ID)
          --cluster-probe-timeout SECS  liveness probe timeout; a node missing 3 in a row is declared dead (default 5; env PADDOCK_CLUSTER_PROBE_TIMEOUT)
          --log-format text|json    console log lines as text or JSON objects (default text; env PADDOCK_LOG_FORMAT)
          --metrics on|off          Prometheus text at GET /metrics, admin key required (default on; env PADDOCK_METRICS)
          --start-images on|off     on gVisor, run a template's start command once and restore that checkpoint in its creates (default on; env PADDOCK_START_IMAGES)
          --otlp-endpoint URL       send traces by OTLP/HTTP to URL (default none: no traces; env PADDOCK_OTLP_ENDPOINT)
          --audit-max-events N      audit events kept per sandbox; 0: no audit trail (default 10000; env PADDOCK_AUDIT_MAX_EVENTS)
          --audit-retention SECS    how long audit events are kept (default 2592000, 30 days; env PADDOCK_AUDIT_RETENTION)
        env PADDOCK_API_KEY: an API key accepted besides the stored ones.
        """;

    /// <summary>Parses the command line; throws <see cref="ArgumentException"/> with a message for the user.</summary>
    public static DaemonOptions Parse(IReadOnlyList<string> args, Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        string? Env(string name) => environment("PADDOCK_" + name) is { Length: > 0 } v ? v : null;

        var options = new DaemonOptions
        {
            ExtraApiKey = Env("API_KEY"),
        };
        options = Apply(options, "--listen", Env("LISTEN"));
        options = Apply(options, "--state-dir", Env("STATE_DIR"));
        options = Apply(options, "--templates-dir", Env("TEMPLATES_DIR"));
        options = Apply(options, "--domain", Env("DOMAIN"));
        options = Apply(options, "--default-timeout", Env("DEFAULT_TIMEOUT"));
        options = Apply(options, "--max-timeout", Env("MAX_TIMEOUT"));
        options = Apply(options, "--max-sandboxes", Env("MAX_SANDBOXES"));
        options = Apply(options, "--max-paused-per-team", Env("MAX_PAUSED_PER_TEAM"));
        options = Apply(options, "--cpus", Env("CPUS"));
        options = Apply(options, "--memory-mb", Env("MEMORY_MB"));
        options = Apply(options, "--disk-mb", Env("DISK_MB"));
        options = Apply(options, "--max-pids", Env("MAX_PIDS"));
        options = Apply(options, "--volume-size-mb", Env("VOLUME_SIZE_MB"));
        options = Apply(options, "--max-volume-size-mb", Env("MAX_VOLUME_SIZE_MB"));
        options = Apply(options, "--max-volumes", Env("MAX_VOLUMES"));
        options = Apply(options, "--max-volume-total-mb", Env("MAX_VOLUME_TOTAL_MB"));
        options = Apply(options, "--prepare-template", Env("PREPARE_TEMPLATE"));
        options = Apply(options, "--pool", Env("POOL"));
        options = Apply(options, "--pool-refill", Env("POOL_REFILL"));
        options = Apply(options, "--image-registry", Env("IMAGE_REGISTRY"));
        options = Apply(options, "--image-registry-ca", Env("IMAGE_REGISTRY_CA"));
        options = Apply(options, "--max-image-mb", Env("MAX_IMAGE_MB"));
        options = Apply(options, "--freeze-after", Env("FREEZE_AFTER"));
        options = Apply(options, "--tls-cert", Env("TLS_CERT"));
        options = Apply(options, "--tls-key", Env("TLS_KEY"));
        options = Apply(options, "--tls-self-signed", Env("TLS_SELF_SIGNED"));
        options = Apply(options, "--metrics-interval", Env("METRICS_INTERVAL"));
        options = Apply(options, "--metrics-samples", Env("METRICS_SAMPLES"));
        options = Apply(options, "--isolation", Env("ISOLATION"));
        options = Apply(options, "--store", Env("STORE"));
        options = Apply(options, "--cluster", Env("CLUSTER"));
        options = Apply(options, "--node-id", Env("NODE_ID"));
        options = Apply(options, "--advertise", Env("ADVERTISE"));
        options = Apply(options, "--cluster-port", Env("CLUSTER_PORT"));
        options = Apply(options, "--cluster-id", Env("CLUSTER_ID"));
        options = Apply(options, "--cluster-probe-timeout", Env("CLUSTER_PROBE_TIMEOUT"));
        options = Apply(options, "--log-format", Env("LOG_FORMAT"));
        options = Apply(options, "--metrics", Env("METRICS"));
        options = Apply(options, "--start-images", Env("START_IMAGES"));
        options = Apply(options, "--otlp-endpoint", Env("OTLP_ENDPOINT"));
        options = Apply(options, "--audit-max-events", Env("AUDIT_MAX_EVENTS"));
        options = Apply(options, "--audit-retention", Env("AUDIT_RETENTION"));
        for (var i = 0; i < args.Count; i++)
        {
            var name = args[i];
            string value;
            var eq = name.IndexOf('=', StringComparison.Ordinal);
            if (name.StartsWith("--", StringComparison.Ordinal) && eq > 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }
            else if (name is "--tls-self-signed" or "--cluster")
            {
                value = "true"; // a flag; --tls-self-signed=false also parses
            }
            else
            {
                if (i + 1 >= args.Count)
                {
                    throw new ArgumentException($"option {name} needs a value");
                }
                value = args[++i];
            }
            options = Apply(options, name, value);
        }
        if ((options.TlsCertPath is null) != (options.TlsKeyPath is null))
        {
            throw new ArgumentException("--tls-cert and --tls-key go together: give both, or --tls-self-signed");
        }
        if (options.TlsSelfSigned && options.TlsCertPath is not null)
        {
            throw new ArgumentException("--tls-self-signed and --tls-cert are alternatives: give one");
        }
        if (options.Listen.Scheme == Uri.UriSchemeHttps && !options.Tls)
        {
            throw new ArgumentException($"--listen {options.Listen} is https: give --tls-cert and --tls-key, or --tls-self-signed");
        }
        if (options.DefaultTimeoutSeconds > options.MaxTimeoutSeconds)
        {
            throw new ArgumentException($"the default timeout ({options.DefaultTimeoutSeconds} s) exceeds the maximum ({options.MaxTimeoutSeconds} s)");
        }
        return options with { Cluster = options.BuildCluster() };
    }

    /// <summary>The cluster settings from the cluster options, or null without --cluster; throws on a bad combination.</summary>
    private ClusterSettings? BuildCluster()
    {
        if (!_clusterEnabled)
        {
            return _nodeId is null && _advertise is null && _clusterPort is null && _clusterId is null && _clusterProbeTimeout is null
                ? null
                : throw new ArgumentException("--node-id, --advertise, --cluster-port, --cluster-id and --cluster-probe-timeout only apply with --cluster");
        }
        if (PostgresConnectionString is null)
        {
            throw new ArgumentException("--cluster needs the PostgreSQL store: give --store postgres://user:password@host:port/database (every node shares it)");
        }
        var advertise = _advertise
            ?? (System.Net.IPAddress.TryParse(Listen.Host.Trim('[', ']'), out var listen) && !listen.Equals(System.Net.IPAddress.Any) && !listen.Equals(System.Net.IPAddress.IPv6Any) ? listen : null)
            ?? throw new ArgumentException($"--cluster needs an address the other nodes can reach: give --advertise IP (the listen address {Listen.Host} is not one)");
        if (Listen.Port == 0)
        {
            throw new ArgumentException("--cluster needs a fixed --listen port: the other nodes forward requests to it");
        }
        var settings = new ClusterSettings
        {
            NodeId = ClusterSettings.ValidateNodeId(_nodeId ?? Environment.MachineName.ToLowerInvariant()),
            AdvertiseAddress = advertise,
        };
        return settings with
        {
            SiloPort = _clusterPort ?? settings.SiloPort,
            ClusterId = _clusterId ?? settings.ClusterId,
            ProbeTimeout = _clusterProbeTimeout ?? settings.ProbeTimeout,
        };
    }

    private static DaemonOptions Apply(DaemonOptions options, string name, string? value)
    {
        if (value is null)
        {
            return options;
        }
        return name switch
        {
            "--listen" => options with { Listen = ParseListen(value) },
            "--state-dir" => options with { StateDir = value.Length > 0 ? value : throw new ArgumentException("--state-dir needs a directory") },
            "--templates-dir" => options with { TemplatesDir = value.Length > 0 ? value : throw new ArgumentException("--templates-dir needs a directory") },
            "--domain" => options with { Domain = ParseDomain(value) },
            "--default-timeout" => options with { DefaultTimeoutSeconds = ParsePositive(name, value) },
            "--max-timeout" => options with { MaxTimeoutSeconds = ParsePositive(name, value) },
            "--max-sandboxes" => options with { MaxSandboxes = ParsePositive(name, value) },
            "--max-paused-per-team" => options with { MaxPausedPerTeam = ParsePositive(name, value) },
            "--cpus" => options with { DefaultCpuCount = ParsePositive(name, value) },
            "--memory-mb" => options with { DefaultMemoryMB = ParseAtLeast(name, value, 128) },
            "--disk-mb" => options with { DefaultDiskSizeMB = ParsePositive(name, value) },
            "--max-pids" => options with { MaxPids = ParseAtLeast(name, value, 16) },
            "--volume-size-mb" => options with { VolumeSizeMB = ParseAtLeast(name, value, 16) },
            "--max-volume-size-mb" => options with { MaxVolumeSizeMB = ParseAtLeast(name, value, 16) },
            "--max-volumes" => options with { MaxVolumesPerTeam = ParseAtLeast(name, value, 0) },
            "--max-volume-total-mb" => options with { MaxVolumeTotalMB = ParseAtLeast(name, value, 0) },
            "--prepare-template" => options with { PrepareTemplate = value.Length > 0 ? value : throw new ArgumentException("--prepare-template needs a template name") },
            "--pool" => options with { Pools = options.Pools with { Sizes = PoolSettings.ParseSizes(value) } },
            "--pool-refill" => options with { Pools = options.Pools with { RefillConcurrency = ParsePositive(name, value) } },
            "--image-registry" => options with { ImageRegistry = ParseRegistry(value) },
            "--image-registry-ca" => options with { ImageRegistryCa = File.Exists(value) ? value : throw new ArgumentException($"--image-registry-ca: no file {value}") },
            "--max-image-mb" => options with { MaxImageMB = ParsePositive(name, value) },
            "--freeze-after" => options with { FreezeAfter = ParseSeconds(name, value) },
            "--tls-cert" => options with { TlsCertPath = File.Exists(value) ? value : throw new ArgumentException($"--tls-cert: no file {value}") },
            "--tls-key" => options with { TlsKeyPath = File.Exists(value) ? value : throw new ArgumentException($"--tls-key: no file {value}") },
            "--tls-self-signed" => options with { TlsSelfSigned = bool.TryParse(value, out var b) ? b : throw new ArgumentException($"invalid value '{value}' for --tls-self-signed: expected true or false") },
            "--metrics-interval" => options with { MetricsInterval = ParseSeconds(name, value) },
            "--metrics-samples" => options with { MetricsSamples = ParsePositive(name, value) },
            "--store" => options with
            {
                PostgresConnectionString = value switch
                {
                    "sqlite" => null,
                    _ when Store.PostgresConnectionString.IsPostgres(value) => Store.PostgresConnectionString.FromUri(value),
                    _ => throw new ArgumentException($"invalid value '{Store.PostgresConnectionString.Redact(value)}' for --store: expected sqlite or postgres://user:password@host:port/database"),
                },
            },
            "--isolation" => options with { Isolation = value.Length > 0 ? value.ToLowerInvariant() : throw new ArgumentException("--isolation needs a tier name (runc, gvisor)") },
            "--log-format" => options with
            {
                LogFormat = value switch
                {
                    "text" => LogFormat.Text,
                    "json" => LogFormat.Json,
                    _ => throw new ArgumentException($"invalid value '{value}' for --log-format: expected text or json"),
                },
            },
            "--metrics" => options with { MetricsEnabled = ParseOnOff(name, value) },
            "--start-images" => options with { StartImages = ParseOnOff(name, value) },
            "--otlp-endpoint" => options with { OtlpEndpoint = ParseOtlp(value) },
            "--audit-max-events" => options with { AuditMaxEventsPerSandbox = value == "0" ? 0 : ParseAtLeast(name, value, 100) },
            "--audit-retention" => options with { AuditRetention = TimeSpan.FromSeconds(ParsePositive(name, value)) },
            "--cluster" => options with { _clusterEnabled = bool.TryParse(value, out var c) ? c : throw new ArgumentException($"invalid value '{value}' for --cluster: expected true or false") },
            "--node-id" => options with { _nodeId = ClusterSettings.ValidateNodeId(value) },
            "--advertise" => options with
            {
                _advertise = System.Net.IPAddress.TryParse(value, out var ip) && !ip.Equals(System.Net.IPAddress.Any) && !ip.Equals(System.Net.IPAddress.IPv6Any)
                    ? ip
                    : throw new ArgumentException($"invalid value '{value}' for --advertise: expected the IP address other nodes reach this one at"),
            },
            "--cluster-port" => options with
            {
                _clusterPort = int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and < 65536
                    ? port
                    : throw new ArgumentException($"invalid value '{value}' for --cluster-port: expected a port from 1 to 65535"),
            },
            "--cluster-id" => options with { _clusterId = value.Length is > 0 and <= 150 ? value : throw new ArgumentException("--cluster-id needs a name of at most 150 characters") },
            "--cluster-probe-timeout" => options with
            {
                _clusterProbeTimeout = ParseSeconds(name, value) is { TotalMilliseconds: >= 100 } t ? t : throw new ArgumentException($"invalid value '{value}' for {name}: expected at least 0.1 seconds"),
            },
            _ => throw new ArgumentException($"unknown option '{name}'"),
        };
    }

    /// <summary>Accepts <c>http(s)://HOST:PORT</c> or <c>HOST:PORT</c>; TLS is on when a TLS option is given (https needs one).</summary>
    internal static Uri ParseListen(string text)
    {
        var withScheme = text.Contains("://", StringComparison.Ordinal) ? text : "http://" + text;
        if (!Uri.TryCreate(withScheme, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)
            || uri.AbsolutePath != "/" || uri.Query.Length > 0)
        {
            throw new ArgumentException($"invalid listen address '{text}': expected http://HOST:PORT");
        }
        return uri;
    }

    private static Uri ParseRegistry(string text) =>
        Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.AbsolutePath == "/" && uri.Query.Length == 0
            ? uri
            : throw new ArgumentException($"invalid image registry '{text}': expected http(s)://HOST[:PORT]");

    private static Uri ParseOtlp(string text) =>
        Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.Query.Length == 0
            ? uri
            : throw new ArgumentException($"invalid OTLP endpoint '{text}': expected http(s)://HOST:PORT (the /v1/traces path is added)");

    private static string ParseDomain(string text)
    {
        var domain = text.Trim().TrimEnd('.');
        if (domain.Length == 0 || domain.Contains('/', StringComparison.Ordinal) || domain.Contains("://", StringComparison.Ordinal))
        {
            throw new ArgumentException($"invalid domain '{text}': expected a host name, optionally with :PORT");
        }
        return domain;
    }

    private static int ParsePositive(string option, string text) => ParseAtLeast(option, text, 1);

    private static bool ParseOnOff(string option, string text) => text switch
    {
        "on" or "true" or "1" => true,
        "off" or "false" or "0" => false,
        _ => throw new ArgumentException($"invalid value '{text}' for {option}: expected on or off"),
    };

    /// <summary>Seconds, fractions allowed (tests freeze after 1 s or less); zero is allowed.</summary>
    private static TimeSpan ParseSeconds(string option, string text) =>
        double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var s) && s >= 0 && s <= 86400
            ? TimeSpan.FromSeconds(s)
            : throw new ArgumentException($"invalid value '{text}' for {option}: expected seconds from 0 to 86400");

    private static int ParseAtLeast(string option, string text, int minimum) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= minimum
            ? n
            : throw new ArgumentException($"invalid value '{text}' for {option}: expected an integer of at least {minimum}");
}

/// <summary>How paddockd writes its console log.</summary>
internal enum LogFormat
{
    /// <summary>One line per event: time, level, category, message, and the trace id when there is one.</summary>
    Text,

    /// <summary>One JSON object per line (Microsoft.Extensions.Logging's JSON console formatter), scopes and trace ids included.</summary>
    Json,
}
