using Prometheus;

namespace Paddock.Daemon.Observability;

/// <summary>
/// paddockd's Prometheus series (docs: docs/metrics.md). Each daemon has its own registry (tests run several daemons in
/// one process; the static default registry would mix them). Counters and histograms are updated where things
/// happen; the gauges (sandboxes by state, pools, frozen, capacity) are read from their owners at each scrape through
/// <see cref="OnCollect"/>. With <c>--metrics off</c> every update returns at once and nothing is registered.
/// </summary>
internal sealed class DaemonMetrics
{
    private readonly Counter? _creates;
    private readonly Histogram? _createSeconds;
    private readonly Counter? _kills;
    private readonly Counter? _poolRefills;
    private readonly Counter? _proxyRequests;
    private readonly Counter? _proxyBytes;
    private readonly Counter? _proxyErrors;
    private readonly Counter? _agentCalls;
    private readonly Counter? _templateBuilds;
    private readonly Histogram? _templateBuildSeconds;
    private readonly Counter? _auditEvents;
    private readonly Counter? _auditDropped;
    private readonly Counter.Child? _proxyBytesIn;
    private readonly Counter.Child? _proxyBytesOut;

    public DaemonMetrics(DaemonOptions options)
    {
        Enabled = options.MetricsEnabled;
        Registry = Metrics.NewCustomRegistry();
        if (!Enabled)
        {
            return;
        }
        var f = Metrics.WithCustomRegistry(Registry);
        // Creates take ~5 ms pooled and ~70 ms to seconds cold (bench/README): 1 ms to ~33 s in doublings.
        var createBuckets = Histogram.ExponentialBuckets(0.001, 2, 16);
        _creates = f.CreateCounter("paddock_sandbox_creates_total", "Sandbox creates by outcome (ok, or the failure's kind) and path (pooled, cold, none: failed before either).",
            new CounterConfiguration { LabelNames = ["outcome", "path"] });
        _createSeconds = f.CreateHistogram("paddock_sandbox_create_seconds", "Time of successful creates, from the request to the sandbox answering, by path.",
            new HistogramConfiguration { LabelNames = ["path"], Buckets = createBuckets });
        _kills = f.CreateCounter("paddock_sandbox_kills_total", "Sandboxes ended, by reason (api, timeout, lost, other).",
            new CounterConfiguration { LabelNames = ["reason"] });
        _poolRefills = f.CreateCounter("paddock_pool_refills_total", "Warm pool members started, by pool and outcome.",
            new CounterConfiguration { LabelNames = ["pool", "outcome"] });
        _proxyRequests = f.CreateCounter("paddock_proxy_requests_total", "Requests proxied to sandboxes, by target (agent: envd's port, port: any other) and status class.",
            new CounterConfiguration { LabelNames = ["target", "code"] });
        _proxyBytes = f.CreateCounter("paddock_proxy_bytes_total", "Body bytes proxied (in: client to sandbox, out: sandbox to client); upgraded connections (WebSockets) are not counted.",
            new CounterConfiguration { LabelNames = ["direction"] });
        _proxyErrors = f.CreateCounter("paddock_proxy_errors_total", "Proxied requests that failed in the proxy, by YARP's ForwarderError.",
            new CounterConfiguration { LabelNames = ["error"] });
        _agentCalls = f.CreateCounter("paddock_agent_calls_total", "Calls to sandbox agents (envd) through the proxy, by method.",
            new CounterConfiguration { LabelNames = ["method"] });
        _templateBuilds = f.CreateCounter("paddock_template_builds_total", "Template builds by outcome.",
            new CounterConfiguration { LabelNames = ["outcome"] });
        _templateBuildSeconds = f.CreateHistogram("paddock_template_build_seconds", "Template build time.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.1, 2, 14) });
        _auditEvents = f.CreateCounter("paddock_audit_events_total", "Audit events recorded, by kind.",
            new CounterConfiguration { LabelNames = ["kind"] });
        _auditDropped = f.CreateCounter("paddock_audit_dropped_total", "Audit events not kept, by why (bound: past a sandbox's bound; queue-full; store-failed).",
            new CounterConfiguration { LabelNames = ["reason"] });
        _proxyBytesIn = _proxyBytes.WithLabels("in");
        _proxyBytesOut = _proxyBytes.WithLabels("out");
        Sandboxes = f.CreateGauge("paddock_sandboxes", "Sandboxes now, by state (running, frozen, starting), tier and team.",
            new GaugeConfiguration { LabelNames = ["state", "tier", "team"] });
        PoolReady = f.CreateGauge("paddock_pool_ready", "Warm pool members ready to be claimed, by pool.",
            new GaugeConfiguration { LabelNames = ["pool"] });
        Frozen = f.CreateGauge("paddock_sandboxes_frozen", "Sandboxes frozen by the idle freezer now.");
        CapacityLeft = f.CreateGauge("paddock_host_capacity_left", "Sandboxes that can still start before --max-sandboxes (killed ones still tearing down count).");
        Teardowns = f.CreateGauge("paddock_sandbox_teardowns", "Killed sandboxes whose pieces are still being removed.");
    }

    public bool Enabled { get; }

    public CollectorRegistry Registry { get; }

    public Gauge? Sandboxes { get; }

    public Gauge? PoolReady { get; }

    public Gauge? Frozen { get; }

    public Gauge? CapacityLeft { get; }

    public Gauge? Teardowns { get; }

    /// <summary>Runs <paramref name="update"/> before each scrape to set the gauges from their owners.</summary>
    public void OnCollect(Action update)
    {
        if (Enabled)
        {
            Registry.AddBeforeCollectCallback(update);
        }
    }

    public void CreateSucceeded(string path, TimeSpan elapsed)
    {
        _creates?.WithLabels("ok", path).Inc();
        _createSeconds?.WithLabels(path).Observe(elapsed.TotalSeconds);
    }

    public void CreateFailed(string outcome, string path) => _creates?.WithLabels(outcome, path).Inc();

    public void Killed(string reason) => _kills?.WithLabels(reason).Inc();

    public void PoolRefill(string pool, bool ok) => _poolRefills?.WithLabels(pool, ok ? "ok" : "failed").Inc();

    public void ProxyRequest(bool agent, int status, long bytesIn, long bytesOut)
    {
        if (!Enabled)
        {
            return;
        }
        _proxyRequests!.WithLabels(agent ? "agent" : "port", StatusClass(status)).Inc();
        if (bytesIn > 0)
        {
            _proxyBytesIn!.Inc(bytesIn);
        }
        if (bytesOut > 0)
        {
            _proxyBytesOut!.Inc(bytesOut);
        }
    }

    public void ProxyError(string error) => _proxyErrors?.WithLabels(error).Inc();

    public void AgentCall(string method) => _agentCalls?.WithLabels(method).Inc();

    public void TemplateBuild(bool ok, TimeSpan elapsed)
    {
        _templateBuilds?.WithLabels(ok ? "ok" : "failed").Inc();
        _templateBuildSeconds?.Observe(elapsed.TotalSeconds);
    }

    public void AuditRecorded(string kind) => _auditEvents?.WithLabels(kind).Inc();

    public void AuditDropped(string reason, long count = 1) => _auditDropped?.WithLabels(reason).Inc(count);

    private static string StatusClass(int status) => status switch
    {
        < 200 => "1xx",
        < 300 => "2xx",
        < 400 => "3xx",
        < 500 => "4xx",
        _ => "5xx",
    };
}
