using System.Collections.Concurrent;

namespace Paddock.Daemon.Runtimes;

/// <summary>
/// One isolation tier as the daemon was given it: its runtime, or, when this host cannot run it (its program missing
/// or too old), why not and how to fix that. Registered once per tier (<c>services.AddSingleton(SandboxTier)</c>).
/// </summary>
internal sealed class SandboxTier
{
    private readonly Lazy<ISandboxRuntime>? _runtime;
    private readonly Func<bool> _hasState;

    private SandboxTier(string name, Lazy<ISandboxRuntime>? runtime, string? unavailableReason, Func<bool> hasState, bool deferred = false)
    {
        Name = name;
        IsDeferred = deferred;
        _runtime = runtime;
        UnavailableReason = unavailableReason;
        _hasState = hasState;
    }

    public string Name { get; }

    /// <summary>Why the tier cannot run here and what to install; null when it can.</summary>
    public string? UnavailableReason { get; }

    /// <summary>Made by <see cref="Deferred"/>: its runtime is made, and so disposed, by <see cref="RuntimeTiers"/>.</summary>
    public bool IsDeferred { get; }

    /// <summary>Whether the tier can start sandboxes here.</summary>
    public bool IsAvailable => _runtime is not null;

    /// <summary>Whether its runtime has been made (a deferred tier's is made by its first use).</summary>
    public bool IsCreated => _runtime is { IsValueCreated: true };

    /// <summary>
    /// Whether the tier may have sandboxes or leftovers on the host: made already, or its state says so. Recovery
    /// and a destroy of an unknown id ask only such tiers, so a deferred tier nobody used is never made.
    /// </summary>
    public bool MayHaveSandboxes => IsCreated || (_runtime is not null && _hasState());

    /// <summary>The runtime, made now if it is deferred; throws when the tier is unavailable.</summary>
    public ISandboxRuntime Runtime => _runtime?.Value ?? throw new RuntimeUnavailableException($"the {Name} isolation tier is not available on this host: {UnavailableReason}");

    public static SandboxTier Of(ISandboxRuntime runtime) => new(runtime.Name, new Lazy<ISandboxRuntime>(runtime), null, () => true);

    /// <summary>
    /// A tier whose runtime is made at its first use (a create on it, or recovery when <paramref name="hasState"/>
    /// says it left something on the host): a tier that takes host resources as it starts (mounts, a disk stock, an
    /// nftables table) costs nothing on a daemon whose sandboxes never ask for it.
    /// </summary>
    public static SandboxTier Deferred(string name, Func<ISandboxRuntime> create, Func<bool> hasState) =>
        new(name, new Lazy<ISandboxRuntime>(create, LazyThreadSafetyMode.ExecutionAndPublication), null, hasState, deferred: true);

    public static SandboxTier Unavailable(string name, string reason) => new(name, null, reason, () => false);
}

/// <summary>
/// The isolation tiers above the seam: their names, which one a sandbox gets when nobody chose, and whether a tier can
/// run here. Code above <c>Runtimes/</c> handles tier names only as opaque strings from requests, templates, teams and
/// settings; it never names one.
/// </summary>
internal interface IIsolationTiers
{
    /// <summary>The tier a sandbox runs on when neither its create, its team nor its template chose one.</summary>
    string DefaultTier { get; }

    /// <summary>Every tier this build of the daemon knows, available on this host or not, in registration order.</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>Whether <paramref name="name"/> is a known tier (compared exactly: names are lower case).</summary>
    bool IsKnown(string name);

    /// <summary>Null when the tier can start sandboxes on this host; else why not and how to fix it.</summary>
    string? UnavailableReason(string name);

    /// <summary>What the tier keeps of a sandbox it pauses; <see cref="PauseSupport.None"/> for an unknown or unavailable tier.</summary>
    PauseSupport PauseSupportOf(string name);

    /// <summary>Whether the tier can fork a running sandbox (<see cref="ISandboxRuntime.CanFork"/>); false for an unknown or unavailable tier.</summary>
    bool CanFork(string name);
}

/// <summary>
/// Every tier behind one <see cref="ISandboxRuntime"/>: a start goes to the tier its spec names
/// (<see cref="SandboxSpec.Isolation"/>, else the default), and every call about an existing sandbox goes to the
/// tier that started it (or, after a daemon restart, the tier whose <see cref="ListAsync"/> found it). Sandbox ids
/// are unique across tiers (the daemon makes them), so a sandbox belongs to exactly one tier.
/// </summary>
internal sealed class RuntimeTiers : ISandboxRuntime, IIsolationTiers, IAsyncDisposable
{
    private readonly IReadOnlyList<SandboxTier> _tiers;
    private readonly Dictionary<string, SandboxTier> _byName;

    // Which tier runs each sandbox this instance started or listed; removed when it is destroyed.
    private readonly ConcurrentDictionary<string, ISandboxRuntime> _owners = new(StringComparer.Ordinal);

    private Func<string, Task>? _onAgentExited;

    // Priorities set before a start (warm pools do that with the id the start will use), applied by the tier at start.
    private readonly ConcurrentDictionary<string, bool> _pendingPriorities = new(StringComparer.Ordinal);

    /// <summary>
    /// <paramref name="defaultTier"/> must be one of <paramref name="tiers"/>; it may be unavailable (then every create that
    /// does not choose an available tier gets the reason). Throws <see cref="ArgumentException"/> otherwise.
    /// </summary>
    /// <param name="tiers">The tiers, the default first unless <paramref name="defaultTier"/> names one.</param>
    /// <param name="defaultTier">The tier of sandboxes that choose none.</param>
    public RuntimeTiers(IEnumerable<SandboxTier> tiers, string? defaultTier)
    {
        _tiers = [.. tiers];
        if (_tiers.Count == 0)
        {
            throw new ArgumentException("no isolation tier is registered", nameof(tiers));
        }
        _byName = new Dictionary<string, SandboxTier>(StringComparer.Ordinal);
        foreach (var tier in _tiers)
        {
            if (!_byName.TryAdd(tier.Name, tier))
            {
                throw new ArgumentException($"the isolation tier '{tier.Name}' is registered twice", nameof(tiers));
            }
        }
        DefaultTier = defaultTier ?? _tiers[0].Name;
        if (!_byName.ContainsKey(DefaultTier))
        {
            throw new ArgumentException($"--isolation: unknown isolation tier '{DefaultTier}' (this daemon has {string.Join(", ", Names)})");
        }
    }

    public string DefaultTier { get; }

    public IReadOnlyList<string> Names => [.. _tiers.Select(t => t.Name)];

    /// <summary>The default tier's name: what a record says when nothing else was chosen.</summary>
    public string Name => DefaultTier;

    public bool IsKnown(string name) => _byName.ContainsKey(name);

    /// <summary>Handed to every tier, deferred ones as they are made.</summary>
    public Func<string, Task>? OnAgentExited
    {
        get => _onAgentExited;
        set
        {
            _onAgentExited = value;
            foreach (var tier in _tiers.Where(t => t.IsCreated))
            {
                tier.Runtime.OnAgentExited = value;
            }
        }
    }

    public PauseSupport PauseSupportOf(string name) =>
        _byName.TryGetValue(name, out var tier) && tier.IsAvailable ? Made(tier).PauseSupport : PauseSupport.None;

    public bool CanFork(string name) =>
        _byName.TryGetValue(name, out var tier) && tier.IsAvailable && Made(tier).CanFork;

    /// <summary>The source's tier forks it; each copy that runs is routed to that tier from then on.</summary>
    public async Task<IReadOnlyList<ForkedCopy>> ForkAsync(string sourceId, IReadOnlyList<string> copyIds, CancellationToken cancellationToken)
    {
        var owner = Owner(sourceId);
        // Routed before the fork: a copy restored but not yet reported must be destroyable through this seam.
        foreach (var id in copyIds)
        {
            _owners[id] = owner;
        }
        IReadOnlyList<ForkedCopy> copies;
        try
        {
            copies = await owner.ForkAsync(sourceId, copyIds, cancellationToken);
        }
        catch
        {
            foreach (var id in copyIds)
            {
                _owners.TryRemove(id, out _);
            }
            throw;
        }
        foreach (var copy in copies)
        {
            if (copy.Sandbox is null)
            {
                _owners.TryRemove(copy.SandboxId, out _);
            }
        }
        return [.. copies.Select(c => c.Sandbox is null ? c : c with { Sandbox = c.Sandbox with { Tier = owner.Name } })];
    }

    public Task<long> SnapshotMemoryAsync(string sandboxId, string destination, CancellationToken cancellationToken) =>
        Owner(sandboxId).SnapshotMemoryAsync(sandboxId, destination, cancellationToken);

    /// <summary>Routed as a start is: to the spec's tier, which owns the sandbox from then on.</summary>
    public async Task<RuntimeSandbox> RestoreMemoryAsync(string image, SandboxSpec spec, CancellationToken cancellationToken)
    {
        var name = spec.Isolation ?? DefaultTier;
        if (!_byName.TryGetValue(name, out var tier))
        {
            throw new SandboxStartException(spec.SandboxId, UnavailableReason(name)!);
        }
        var runtime = Made(tier);
        _owners[spec.SandboxId] = runtime;
        try
        {
            return await runtime.RestoreMemoryAsync(image, spec, cancellationToken) with { Tier = runtime.Name };
        }
        catch
        {
            _owners.TryRemove(spec.SandboxId, out _);
            throw;
        }
    }

    public string? UnavailableReason(string name) =>
        _byName.TryGetValue(name, out var tier) ? tier.UnavailableReason : $"unknown isolation tier '{name}' (this daemon has {string.Join(", ", Names)})";

    /// <summary>The tiers that may have sandboxes on the host (made, or with state a deferred one left).</summary>
    private IEnumerable<ISandboxRuntime> Present => _tiers.Where(t => t.MayHaveSandboxes).Select(Made);

    /// <summary>The tier's runtime, made now if it is deferred, with the exit callback handed to it.</summary>
    private ISandboxRuntime Made(SandboxTier tier)
    {
        var created = tier.IsCreated;
        var runtime = tier.Runtime;
        if (!created && _onAgentExited is not null)
        {
            runtime.OnAgentExited = _onAgentExited;
        }
        return runtime;
    }

    public async Task<RuntimeSandbox> StartAsync(SandboxSpec spec, CancellationToken cancellationToken)
    {
        var name = spec.Isolation ?? DefaultTier;
        if (!_byName.TryGetValue(name, out var tier))
        {
            throw new SandboxStartException(spec.SandboxId, UnavailableReason(name)!);
        }
        var runtime = Made(tier);
        if (_pendingPriorities.TryRemove(spec.SandboxId, out var background))
        {
            await runtime.SetCpuPriorityAsync(spec.SandboxId, background, cancellationToken);
        }
        _owners[spec.SandboxId] = runtime;
        try
        {
            return await runtime.StartAsync(spec, cancellationToken) with { Tier = runtime.Name };
        }
        catch
        {
            // A failed start leaves nothing behind (the tier's promise), so there is nothing left to route to.
            _owners.TryRemove(spec.SandboxId, out _);
            throw;
        }
    }

    public async Task DestroyAsync(string sandboxId, CancellationToken cancellationToken)
    {
        _pendingPriorities.TryRemove(sandboxId, out _);
        if (_owners.TryGetValue(sandboxId, out var owner))
        {
            await owner.DestroyAsync(sandboxId, cancellationToken);
        }
        else
        {
            // Not started or listed by this instance: every tier's destroy is idempotent, so asking each is safe.
            foreach (var runtime in Present)
            {
                await runtime.DestroyAsync(sandboxId, cancellationToken);
            }
        }
        _owners.TryRemove(sandboxId, out _);
    }

    public async Task<IReadOnlyList<RuntimeSandbox>> ListAsync(CancellationToken cancellationToken)
    {
        var all = new List<RuntimeSandbox>();
        foreach (var runtime in Present)
        {
            foreach (var sandbox in await runtime.ListAsync(cancellationToken))
            {
                _owners[sandbox.SandboxId] = runtime;
                all.Add(sandbox with { Tier = runtime.Name });
            }
        }
        return all;
    }

    public Task PauseAsync(string sandboxId, bool keepMemory, CancellationToken cancellationToken) =>
        Owner(sandboxId).PauseAsync(sandboxId, keepMemory, cancellationToken);

    public Task KeepIdentityAsync(string sandboxId, IReadOnlyDictionary<string, string> envVars, string? accessToken, CancellationToken cancellationToken) =>
        Owner(sandboxId).KeepIdentityAsync(sandboxId, envVars, accessToken, cancellationToken);

    public async Task<RuntimeSandbox> ResumeAsync(string sandboxId, bool keepMemory, CancellationToken cancellationToken) =>
        await Owner(sandboxId).ResumeAsync(sandboxId, keepMemory, cancellationToken) with { Tier = Owner(sandboxId).Name };

    /// <summary>Every tier's paused sandboxes; each is then routed to its tier (for resume and destroy after a restart).</summary>
    public async Task<IReadOnlyList<PausedSandbox>> ListPausedAsync(CancellationToken cancellationToken)
    {
        var all = new List<PausedSandbox>();
        foreach (var runtime in Present)
        {
            foreach (var paused in await runtime.ListPausedAsync(cancellationToken))
            {
                _owners[paused.SandboxId] = runtime;
                all.Add(paused with { Tier = runtime.Name });
            }
        }
        return all;
    }

    public async Task<IReadOnlyList<string>> CleanupLeftoversAsync(CancellationToken cancellationToken)
    {
        var all = new List<string>();
        foreach (var runtime in Present)
        {
            all.AddRange(await runtime.CleanupLeftoversAsync(cancellationToken));
        }
        return all;
    }

    public Task<SandboxUsage?> GetUsageAsync(string sandboxId, CancellationToken cancellationToken) =>
        _owners.TryGetValue(sandboxId, out var owner) ? owner.GetUsageAsync(sandboxId, cancellationToken) : Task.FromResult<SandboxUsage?>(null);

    public ValueTask<Stream> ConnectAsync(string sandboxId, int port, CancellationToken cancellationToken) =>
        Owner(sandboxId).ConnectAsync(sandboxId, port, cancellationToken);

    public Task<long> SnapshotFilesystemAsync(string sandboxId, string destination, CancellationToken cancellationToken) =>
        Owner(sandboxId).SnapshotFilesystemAsync(sandboxId, destination, cancellationToken);

    public Task UpdateNetworkAsync(string sandboxId, Networking.EgressPolicy policy, CancellationToken cancellationToken) =>
        Owner(sandboxId).UpdateNetworkAsync(sandboxId, policy, cancellationToken);

    public Task SetCpuPriorityAsync(string sandboxId, bool background, CancellationToken cancellationToken)
    {
        if (_owners.TryGetValue(sandboxId, out var owner))
        {
            return owner.SetCpuPriorityAsync(sandboxId, background, cancellationToken);
        }
        // Before its start: the contract lets a caller set it with the id the start will use.
        _pendingPriorities[sandboxId] = background;
        return Task.CompletedTask;
    }

    public Task<bool> KillProcessesAsync(string sandboxId, CancellationToken cancellationToken) =>
        _owners.TryGetValue(sandboxId, out var owner) ? owner.KillProcessesAsync(sandboxId, cancellationToken) : Task.FromResult(false);

    public Task<bool> SetFrozenAsync(string sandboxId, bool frozen, CancellationToken cancellationToken) =>
        _owners.TryGetValue(sandboxId, out var owner) ? owner.SetFrozenAsync(sandboxId, frozen, cancellationToken) : Task.FromResult(false);

    public ValueTask<bool> IsOnlyAgentRunningAsync(string sandboxId, CancellationToken cancellationToken) =>
        _owners.TryGetValue(sandboxId, out var owner) ? owner.IsOnlyAgentRunningAsync(sandboxId, cancellationToken) : ValueTask.FromResult(false);

    /// <summary>Disposes the deferred runtimes it made (the container disposes the ones it made itself).</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var tier in _tiers.Where(t => t.IsDeferred && t.IsCreated))
        {
            switch (tier.Runtime)
            {
                case IAsyncDisposable asyncDisposable:
                    await asyncDisposable.DisposeAsync();
                    break;
                case IDisposable disposable:
                    disposable.Dispose();
                    break;
            }
        }
    }

    private ISandboxRuntime Owner(string sandboxId) =>
        _owners.TryGetValue(sandboxId, out var owner) ? owner : throw new SandboxNotFoundException(sandboxId);
}
