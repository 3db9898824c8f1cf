namespace Paddock.Bench.Daemon;

/// <summary>What <c>paddock-bench daemon</c> measures and how much of it.</summary>
internal sealed record DaemonBenchOptions
{
    /// <summary>The paddockd binary (the Release build).</summary>
    public required string Binary { get; init; }

    /// <summary>Built templates shared with the tests, so base is built once per machine.</summary>
    public string TemplatesDir { get; init; } = "/var/lib/paddock-test/templates";

    /// <summary>Sequential create-to-first-output runs, and as many raw <c>runc run</c>s.</summary>
    public int Runs { get; init; } = 20;

    /// <summary>Concurrent clients of the creation-rate figure.</summary>
    public int Clients { get; init; } = 8;

    /// <summary>Sandboxes the concurrent clients create in all.</summary>
    public int Creations { get; init; } = 40;

    /// <summary>Idle sandboxes the memory figure holds at once.</summary>
    public int IdleSandboxes { get; init; } = 10;

    /// <summary>How long the idle sandboxes are left alone before their memory is read.</summary>
    public TimeSpan IdleWait { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The bound on each section's loop, besides its count.</summary>
    public TimeSpan SectionLimit { get; init; } = TimeSpan.FromSeconds(180);
}
