namespace Paddock.Bench.Cluster;

/// <summary>What <c>paddock-bench cluster</c> measures and how much of it.</summary>
internal sealed record ClusterBenchOptions
{
    /// <summary>The paddockd binary (scripts/publish-daemon's, as the daemon bench's).</summary>
    public required string Binary { get; init; }

    /// <summary>Built templates shared with the tests (base must be there: the nodes are started without building it).</summary>
    public string TemplatesDir { get; init; } = "/var/lib/paddock-test/templates";

    /// <summary>Create-to-first-output runs of each kind (through the owner, through another node, on the single node), after a warmup.</summary>
    public int Runs { get; init; } = 10;

    /// <summary><c>echo hi</c> round trips on one sandbox through each path.</summary>
    public int RoundTrips { get; init; } = 30;

    /// <summary>Concurrent clients of the creation-rate figure.</summary>
    public int Clients { get; init; } = 4;

    /// <summary>Create + echo + kill cycles those clients run in all, on the cluster and again on the single node.</summary>
    public int Creations { get; init; } = 12;

    /// <summary>Each node's <c>--max-sandboxes</c>, the single node's too.</summary>
    public int MaxSandboxes { get; init; } = 8;

    /// <summary>Each node's warm pool of base (<c>--pool base=N</c>); 0 (the default): none, every create is cold.</summary>
    public int PoolSize { get; init; }

    /// <summary>SIGKILL trials of the loss figure (each restarts the killed node afterwards).</summary>
    public int Kills { get; init; } = 3;

    /// <summary>The nodes' <c>--cluster-probe-timeout</c> (the cluster tests use 1 s; the daemon's default is 5 s).</summary>
    public TimeSpan ProbeTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest wait for a quiet host before each timed cycle (untimed; a count of the runs that started unquiet).</summary>
    public TimeSpan QuietWait { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>The bound on each section's loop, besides its count.</summary>
    public TimeSpan SectionLimit { get; init; } = TimeSpan.FromSeconds(240);
}
