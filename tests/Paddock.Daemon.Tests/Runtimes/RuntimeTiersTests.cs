using System.Collections.Concurrent;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>The routing of <see cref="RuntimeTiers"/> and the order of <see cref="IsolationChoice"/>, over recording tiers.</summary>
public sealed class RuntimeTiersTests
{
    private static readonly CancellationToken Timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;

    [Fact]
    public async Task Calls_about_a_sandbox_reach_the_tier_that_started_it()
    {
        var a = new RecordingTier("a");
        var b = new RecordingTier("b");
        var tiers = new RuntimeTiers([SandboxTier.Of(a), SandboxTier.Of(b)], "a");

        await tiers.SetCpuPriorityAsync("s2", background: true, Timeout);
        Assert.Equal("a", (await tiers.StartAsync(Spec("s1", null), Timeout)).Tier);
        Assert.Equal("b", (await tiers.StartAsync(Spec("s2", "b"), Timeout)).Tier);
        Assert.Equal(["start s1"], a.Calls);
        Assert.Equal(["priority s2 True", "start s2"], b.Calls);

        await tiers.UpdateNetworkAsync("s2", Networking.EgressPolicy.DenyAll, Timeout);
        await tiers.SetFrozenAsync("s1", true, Timeout);
        await tiers.DestroyAsync("s2", Timeout);
        Assert.Equal(["start s1", "frozen s1 True"], a.Calls);
        Assert.Equal(["priority s2 True", "start s2", "network s2", "destroy s2"], b.Calls);

        // Gone from the routing with its destroy: a call about it now is about no sandbox.
        await Assert.ThrowsAsync<SandboxNotFoundException>(async () => await tiers.ConnectAsync("s2", 80, Timeout));
        Assert.Null(await tiers.GetUsageAsync("s2", Timeout));
    }

    [Fact]
    public async Task After_a_restart_the_tiers_own_what_they_list_and_a_destroy_of_an_unknown_id_asks_every_tier()
    {
        var a = new RecordingTier("a", listed: ["x"]);
        var b = new RecordingTier("b", listed: ["y"]);
        var tiers = new RuntimeTiers([SandboxTier.Of(a), SandboxTier.Of(b)], null);

        var listed = await tiers.ListAsync(Timeout);
        Assert.Equal([("x", "a"), ("y", "b")], listed.Select(s => (s.SandboxId, s.Tier!)));
        await tiers.SnapshotFilesystemAsync("y", "/nowhere", Timeout);
        Assert.Contains("snapshot y", b.Calls);

        await tiers.DestroyAsync("stray", Timeout);
        Assert.Contains("destroy stray", a.Calls);
        Assert.Contains("destroy stray", b.Calls);
    }

    [Fact]
    public async Task An_unavailable_tier_refuses_starts_with_its_reason_and_is_never_called()
    {
        var a = new RecordingTier("a");
        var tiers = new RuntimeTiers([SandboxTier.Of(a), SandboxTier.Unavailable("g", "install g")], "a");
        var ex = await Assert.ThrowsAsync<RuntimeUnavailableException>(() => tiers.StartAsync(Spec("s", "g"), Timeout));
        Assert.Contains("install g", ex.Message, StringComparison.Ordinal);
        Assert.Equal(["a", "g"], tiers.Names);
        Assert.Equal("install g", tiers.UnavailableReason("g"));
        Assert.Null(tiers.UnavailableReason("a"));
        Assert.Empty(await tiers.ListAsync(Timeout));
        Assert.Throws<ArgumentException>(() => new RuntimeTiers([SandboxTier.Of(a)], "nope"));
        Assert.Throws<ArgumentException>(() => new RuntimeTiers([SandboxTier.Of(a), SandboxTier.Of(new RecordingTier("a"))], null));
    }

    [Fact]
    public async Task A_deferred_tier_is_made_at_its_first_start_or_when_its_state_says_it_left_something()
    {
        var made = 0;
        var hasState = false;
        var lazy = new RecordingTier("lazy", listed: ["old"]);
        var deferred = SandboxTier.Deferred("lazy", () => { made++; return lazy; }, () => hasState);
        await using var tiers = new RuntimeTiers([SandboxTier.Of(new RecordingTier("a")), deferred], "a");

        // Recovery and an unknown id's destroy do not make a tier that has nothing on the host.
        Assert.Empty(await tiers.ListAsync(Timeout));
        Assert.Empty(await tiers.CleanupLeftoversAsync(Timeout));
        await tiers.DestroyAsync("nobody", Timeout);
        Assert.Equal(0, made);
        Assert.Null(tiers.UnavailableReason("lazy"));

        // Once its state says so, recovery makes it and adopts what it lists.
        hasState = true;
        Assert.Equal([("old", "lazy")], (await tiers.ListAsync(Timeout)).Select(s => (s.SandboxId, s.Tier!)));
        Assert.Equal(1, made);
        await tiers.StartAsync(Spec("new", "lazy"), Timeout);
        Assert.Equal(1, made);
        Assert.Contains("start new", lazy.Calls);
    }

    [Fact]
    public void The_choice_is_the_request_then_the_team_then_the_template_then_the_default()
    {
        var tiers = new RuntimeTiers([SandboxTier.Of(new RecordingTier("a")), SandboxTier.Of(new RecordingTier("b")), SandboxTier.Unavailable("g", "install g")], "a");
        Assert.Equal("a", IsolationChoice.Resolve(tiers, null, null, null));
        Assert.Equal("b", IsolationChoice.Resolve(tiers, null, null, "b"));
        Assert.Equal("b", IsolationChoice.Resolve(tiers, null, "b", "a"));
        Assert.Equal("a", IsolationChoice.Resolve(tiers, "a", null, "b"));
        Assert.Equal("b", IsolationChoice.Resolve(tiers, "b", "b", null));
        Assert.Throws<IsolationForbiddenException>(() => IsolationChoice.Resolve(tiers, "a", "b", null));
        Assert.Throws<UnknownIsolationException>(() => IsolationChoice.Resolve(tiers, "kata", null, null));
        Assert.Contains("install g", Assert.Throws<RuntimeUnavailableException>(() => IsolationChoice.Resolve(tiers, null, null, "g")).Message, StringComparison.Ordinal);
    }

    private static SandboxSpec Spec(string id, string? isolation) => new()
    {
        SandboxId = id,
        TemplateLayers = ["/nowhere"],
        Limits = new ResourceLimits(1, 128L << 20, 64, 1L << 20),
        Isolation = isolation,
    };

    /// <summary>A tier that records what it was asked, in order, and runs nothing.</summary>
    private sealed class RecordingTier(string name, IReadOnlyList<string>? listed = null) : ISandboxRuntime
    {
        private readonly ConcurrentQueue<string> _calls = new();

        public string Name { get; } = name;

        public IReadOnlyList<string> Calls => [.. _calls];

        public Task<RuntimeSandbox> StartAsync(SandboxSpec spec, CancellationToken cancellationToken)
        {
            _calls.Enqueue($"start {spec.SandboxId}");
            return Task.FromResult(new RuntimeSandbox(spec.SandboxId, null, DateTimeOffset.UtcNow));
        }

        public Task DestroyAsync(string sandboxId, CancellationToken cancellationToken)
        {
            _calls.Enqueue($"destroy {sandboxId}");
            return Task.CompletedTask;
        }

        public Task<IReadOnlyList<RuntimeSandbox>> ListAsync(CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyList<RuntimeSandbox>>([.. (listed ?? []).Select(id => new RuntimeSandbox(id, null, DateTimeOffset.UtcNow))]);

        public Task<IReadOnlyList<string>> CleanupLeftoversAsync(CancellationToken cancellationToken) => Task.FromResult<IReadOnlyList<string>>([]);

        public Task<SandboxUsage?> GetUsageAsync(string sandboxId, CancellationToken cancellationToken) => Task.FromResult<SandboxUsage?>(null);

        public ValueTask<Stream> ConnectAsync(string sandboxId, int port, CancellationToken cancellationToken) => throw new SandboxPortUnreachableException(sandboxId, port);

        public Task<long> SnapshotFilesystemAsync(string sandboxId, string destination, CancellationToken cancellationToken)
        {
            _calls.Enqueue($"snapshot {sandboxId}");
            return Task.FromResult(0L);
        }

        public Task UpdateNetworkAsync(string sandboxId, Networking.EgressPolicy policy, CancellationToken cancellationToken)
        {
            _calls.Enqueue($"network {sandboxId}");
            return Task.CompletedTask;
        }

        public Task SetCpuPriorityAsync(string sandboxId, bool background, CancellationToken cancellationToken)
        {
            _calls.Enqueue($"priority {sandboxId} {background}");
            return Task.CompletedTask;
        }

        public Task<bool> SetFrozenAsync(string sandboxId, bool frozen, CancellationToken cancellationToken)
        {
            _calls.Enqueue($"frozen {sandboxId} {frozen}");
            return Task.FromResult(true);
        }
    }
}
