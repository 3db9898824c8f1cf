namespace Paddock.Bench.Daemon;

/// <summary>What <c>paddock-bench daemon</c> measures and how much of it.</summary>
internal sealed record DaemonBenchOptions
{
    /// <summary>The paddockd binary (the Release build).</summary>
    public required string Binary { get; init; }

    /// <summary>Built templates shared with the tests, so base is built once per machine.</summary>
    public string TemplatesDir { get; init; } = "/var/lib/paddock-test/templates";

    /// <summary>The template paddockd builds before it listens (<c>--prepare-template</c>), and the pool's template.</summary>
    public string Template { get; init; } = "base";

    /// <summary>Sequential create-to-first-output runs, and as many raw <c>runc run</c>s.</summary>
    public int Runs { get; init; } = 20;

    /// <summary>Concurrent clients of the creation-rate figure (issue 6: 16).</summary>
    public int Clients { get; init; } = 16;

    /// <summary>Sandboxes the concurrent clients create in all.</summary>
    public int Creations { get; init; } = 64;

    /// <summary>
    /// Idle sandboxes the memory figure holds at once. Bounded by this flag (issue 6 asks for 1000: try it by hand
    /// with <c>--idle 1000</c> where the host has the memory).
    /// </summary>
    public int IdleSandboxes { get; init; } = 100;

    /// <summary>The bound on creating the idle sandboxes (a 1000 take many minutes on 2 cores).</summary>
    public TimeSpan IdleLimit { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>paddockd's warm pool of base (<c>--pool base=N</c>); 0 runs without a pool (then the pooled figures are cold).</summary>
    public int PoolSize { get; init; } = 16;

    /// <summary>Pool sandboxes paddockd starts at once (<c>--pool-refill</c>).</summary>
    public int PoolRefill { get; init; } = 2;

    /// <summary><c>true</c> round trips on one running sandbox, and as many bare spawns.</summary>
    public int RoundTrips { get; init; } = 50;

    /// <summary>The fan-out figure: this many sandboxes, and <see cref="FanoutCommands"/> commands across them at once.</summary>
    public int FanoutSandboxes { get; init; } = 50;

    public int FanoutCommands { get; init; } = 200;

    /// <summary>The longest wait for the pool to refill before a pooled figure (untimed; a warning when it runs out).</summary>
    public TimeSpan PoolFillLimit { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>
    /// How long the idle sandboxes are left alone before their memory is read: longer than the 10 s after which an
    /// agent without calls gives its memory back (IdleTrim in the agent), so the figure is an idle sandbox's.
    /// </summary>
    public TimeSpan IdleWait { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// paddockd's <c>--freeze-after</c> (zero: never freeze, the figures before the idle freezer). 12 s by default:
    /// after the agent's 10 s IdleTrim, so a frozen sandbox's memory is a trimmed one's, as with the daemon's 30 s
    /// default, without a 30 s wait in every run.
    /// </summary>
    public TimeSpan FreezeAfter { get; init; } = TimeSpan.FromSeconds(12);

    /// <summary>
    /// paddockd's metrics and audit trail (<c>--observe off</c> passes <c>--metrics off --audit-max-events 0</c>), to
    /// measure what they cost: run the same sections with each and compare.
    /// </summary>
    public bool Observe { get; init; } = true;

    /// <summary>After <see cref="IdleWait"/>: how long the idle sandboxes' wake-ups and CPU time are counted.</summary>
    public TimeSpan IdleActivityWindow { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>The bound on each section's loop, besides its count.</summary>
    public TimeSpan SectionLimit { get; init; } = TimeSpan.FromSeconds(180);

    /// <summary>The isolation tier paddockd runs the sandboxes on (<c>--isolation</c>, its default tier): runc or gvisor.</summary>
    public string Isolation { get; init; } = "runc";

    /// <summary>The runsc the gVisor tier's raw baseline runs (the one scripts/setup installs).</summary>
    public string RunscBinary { get; init; } = "/usr/local/lib/paddock/runsc";

    /// <summary>The sections to run (<c>--only</c>); all when not given.</summary>
    public DaemonSection Sections { get; init; } = DaemonSection.All;

    public bool Includes(DaemonSection section) => (Sections & section) != 0;
}

/// <summary>The sections of <c>paddock-bench daemon</c>, by their <c>--only</c> names.</summary>
[Flags]
internal enum DaemonSection
{
    Cold = 1,
    Pooled = 2,
    Exec = 4,
    Rate = 8,
    Fanout = 16,
    Idle = 32,
    All = Cold | Pooled | Exec | Rate | Fanout | Idle,
}
