using System.Collections.Concurrent;
using System.Diagnostics;
using Paddock.Daemon.Proxy;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Pools;

/// <summary>
/// A started pool sandbox waiting to be claimed. <see cref="PoolToken"/> guards its agent until then; <see cref="Isolation"/>
/// is the tier it runs on (its template's default, else the daemon's): only a create resolved to that tier claims it.
/// </summary>
internal sealed record PoolMember(string SandboxId, string Pool, string TemplateId, IReadOnlyList<string> Layers, ResourceLimits Limits, string PoolToken,
    DateTimeOffset ReadyAt, string Isolation);

/// <summary>
/// Warm pools (issue 6): per template, sandboxes started ahead by a background refiller so that a create is a claim
/// plus the caller's settings. A pool sandbox is in no live set (the API, the list and the proxy do not see it), has
/// no deadline and no store record: after a crash the recovery finds it running with no record and destroys it as a
/// stray, so it is never re-adopted as someone's sandbox. A claimed sandbox leaves the pool for good; the pool starts
/// a fresh one rather than ever taking one back, so nothing of one user reaches another.
/// A member starts (while the pool is over half full) and waits at a background CPU priority (its cgroup's
/// cpu.shares at the minimum), is warmed by the daemon's own calls before it counts as ready, and gets the normal
/// priority back at its hand-over; a refill waits briefly after a claim while the pool is over half full, so that
/// the claimer's first command has the CPU first. A template's start command and ready check run in a member before
/// it counts as ready (<see cref="Templates.TemplateStartup.PrepareAsync"/>), so a pooled create does not run them.
/// </summary>
internal sealed class WarmPools : IHostedService, IAsyncDisposable
{
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    // How long a refill waits after a claim while the pool is over half full: about one create plus its first
    // command, so that a refill's runc run, mkfs and agent start (~0.8 s of CPU, bench cold_cycle_cpu_ms) do not
    // compete with them.
    private static readonly TimeSpan ClaimGrace = TimeSpan.FromMilliseconds(50);

    private readonly ISandboxRuntime _runtime;
    private readonly ITemplateLookup _templates;
    private readonly DaemonOptions _options;
    private readonly ILogger<WarmPools> _logger;
    private readonly Pool[] _pools;
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Task, byte> _starts = new();
    private readonly Lazy<SandboxHttpClient?> _agentClient;
    private Task? _loop;
    private int _inFlight;
    private long _lastClaim;
    private int _warmed;
    private int _initsSkipped;

    /// <param name="services">
    /// Where the proxy's <see cref="SandboxHttpClient"/> is found (null: none, and the hand-over opens a connection of
    /// its own with no warm-up). Resolved at first use, since that client depends on the sandbox manager, which
    /// depends on the pools.
    /// </param>
    private readonly Lazy<Observability.DaemonMetrics?> _metrics;

    // The template's start command and ready check (null: none registered, as in the pools' unit tests).
    private readonly Lazy<Templates.TemplateStartup?> _startup;

    public WarmPools(ISandboxRuntime runtime, ITemplateLookup templates, DaemonOptions options, ILogger<WarmPools> logger, IServiceProvider? services = null)
    {
        _agentClient = new Lazy<SandboxHttpClient?>(() => services?.GetService(typeof(SandboxHttpClient)) as SandboxHttpClient);
        _metrics = new Lazy<Observability.DaemonMetrics?>(() => services?.GetService(typeof(Observability.DaemonMetrics)) as Observability.DaemonMetrics);
        _startup = new Lazy<Templates.TemplateStartup?>(() => services?.GetService(typeof(Templates.TemplateStartup)) as Templates.TemplateStartup);
        _runtime = runtime;
        _templates = templates;
        _options = options;
        _logger = logger;
        _pools = [.. options.Pools.Sizes.Where(kv => kv.Value > 0).Select(kv => new Pool(kv.Key, kv.Value))];
    }

    /// <summary>The limits every pool sandbox starts with: the daemon's defaults, which an SDK create without limits asks for.</summary>
    public ResourceLimits PoolLimits => new(_options.DefaultCpuCount, _options.DefaultMemoryMB * 1024L * 1024L, _options.MaxPids, _options.DefaultDiskSizeMB * 1024L * 1024L);

    /// <summary>Ready members per pool now.</summary>
    public IReadOnlyDictionary<string, int> ReadyCounts => _pools.ToDictionary(p => p.Name, p => p.Ready.Count, StringComparer.Ordinal);

    /// <summary>
    /// Each pool's name, the template and tier its members run (null until its first member started) and its ready
    /// members now: what a cluster node reports for placement (Cluster/NodeGrain). A read, no claim.
    /// </summary>
    public IReadOnlyList<(string Pool, string? TemplateId, string? Isolation, int Ready)> Status =>
        [.. _pools.Select(p => (p.Name, p.TemplateId, p.Isolation, p.Ready.Count))];

    /// <summary>Members warmed by the daemon's own calls so far (for tests: zero when no proxy client was found).</summary>
    public int WarmedCount => Volatile.Read(ref _warmed);

    /// <summary>Claims handed over without a POST /init (no variables, the pool's token kept), for tests.</summary>
    public int InitsSkipped => Volatile.Read(ref _initsSkipped);

    /// <summary>Ids of every pool sandbox ready now (for tests and the bench: these must not appear anywhere else).</summary>
    public IReadOnlyList<string> ReadyIds => [.. _pools.SelectMany(p => p.Ready.Select(m => m.SandboxId))];

    /// <summary>
    /// Takes a ready member of <paramref name="template"/>'s pool that can serve a create with these settings, or
    /// null (no pool, empty, or a request a pool sandbox cannot take: other limits or another isolation tier; a network
    /// policy is applied at the hand-over instead). Lock-free: a dequeue. The refiller is woken to replace what was taken.
    /// </summary>
    public PoolMember? TryTake(SandboxTemplate template, ResourceLimits limits, string isolation)
    {
        if (_pools.Length == 0 || limits != PoolLimits)
        {
            return null;
        }
        foreach (var pool in _pools)
        {
            if (!string.Equals(pool.TemplateId, template.TemplateId, StringComparison.Ordinal) || !string.Equals(pool.Isolation, isolation, StringComparison.Ordinal))
            {
                continue;
            }
            // Bounded by what is queued now: stale members are dropped, a fresh one ends the loop.
            for (var i = pool.Ready.Count; i > 0 && pool.Ready.TryDequeue(out var member); i--)
            {
                ReleaseWake();
                if (!member.Layers.SequenceEqual(template.Layers, StringComparer.Ordinal))
                {
                    PoolsLog.Stale(_logger, pool.Name, member.SandboxId);
                    _ = DestroyAsync(member.SandboxId);
                    continue;
                }
                PoolsLog.Claimed(_logger, pool.Name, member.SandboxId);
                Volatile.Write(ref _lastClaim, Stopwatch.GetTimestamp());
                return member;
            }
        }
        return null;
    }

    /// <summary>
    /// Makes <paramref name="member"/> the claimer's: its network policy, its CPU priority, and its variables and access
    /// token (null: none) through the agent's POST /init, authenticated with the pool's token; no /init when there are
    /// no variables and the token is the pool's. On failure the member is destroyed and the error rethrown.
    /// </summary>
    public async Task HandOverAsync(PoolMember member, IReadOnlyDictionary<string, string> envVars, string? accessToken,
        Networking.EgressPolicy? egress, CancellationToken cancellationToken)
    {
        try
        {
            // The caller's network policy first (pool members start with the default, allow-all egress), so nothing
            // of the caller's runs under another policy.
            if (egress is not null)
            {
                await _runtime.UpdateNetworkAsync(member.SandboxId, egress, cancellationToken);
            }
            // The claimer's sandbox runs at the normal priority from here on, its first command included.
            await _runtime.SetCpuPriorityAsync(member.SandboxId, background: false, cancellationToken);
            if (envVars.Count == 0 && string.Equals(accessToken, member.PoolToken, StringComparison.Ordinal))
            {
                // Nothing to change: the agent already holds this token and no variables were asked for.
                Interlocked.Increment(ref _initsSkipped);
                return;
            }
            if (_agentClient.Value is { } client)
            {
                // Over the connection the warm-up left in the proxy's pool, which the claimer's first command then reuses.
                await PoolAgentCalls.InitAsync(client.Invoker, member.SandboxId, member.PoolToken, envVars, accessToken, cancellationToken);
            }
            else
            {
                await AgentInit.SendAsync(_runtime, member.SandboxId, member.PoolToken, envVars, accessToken, cancellationToken);
            }
            // The running agent has them now; a filesystem-only resume boots the bundle again, which must have them too.
            await _runtime.KeepIdentityAsync(member.SandboxId, envVars, accessToken, cancellationToken);
        }
        catch (Exception ex)
        {
            PoolsLog.HandOverFailed(_logger, member.Pool, member.SandboxId, ex);
            await DestroyAsync(member.SandboxId);
            throw;
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (_pools.Length > 0)
        {
            PoolsLog.Configured(_logger, string.Join(", ", _pools.Select(p => $"{p.Name}={p.Size}")), _options.Pools.RefillConcurrency);
            _loop = Task.Run(() => RefillLoopAsync(_stopping.Token), CancellationToken.None);
        }
        return Task.CompletedTask;
    }

    /// <summary>Stops refilling and destroys every pool sandbox, ready or starting.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_stopping.IsCancellationRequested || _pools.Length == 0)
        {
            return;
        }
        await _stopping.CancelAsync();
        if (_loop is not null)
        {
            await _loop.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        // A start in flight sees the cancellation; the runtime removes a half-started sandbox itself, and a start
        // that completed after the cancellation destroys its member (StartMemberAsync).
        await Task.WhenAll(_starts.Keys).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        var members = new List<PoolMember>();
        foreach (var pool in _pools)
        {
            while (pool.Ready.TryDequeue(out var member))
            {
                members.Add(member);
            }
        }
        // A few at a time: each destroy is a runc delete and an unmount, and the host has few cores.
        using var gate = new SemaphoreSlim(4);
        await Task.WhenAll(members.Select(async m =>
        {
            await gate.WaitAsync(CancellationToken.None);
            try
            {
                await DestroyAsync(m.SandboxId);
            }
            finally
            {
                gate.Release();
            }
        }));
        PoolsLog.Stopped(_logger, members.Count);
    }

    private async Task RefillLoopAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            var now = Stopwatch.GetTimestamp();
            TimeSpan? nextRetry = null;
            var sinceClaim = Stopwatch.GetElapsedTime(Volatile.Read(ref _lastClaim), now);
            foreach (var pool in _pools)
            {
                if (pool.RetryAt > now)
                {
                    var wait = Stopwatch.GetElapsedTime(now, pool.RetryAt);
                    nextRetry = nextRetry is { } r && r < wait ? r : wait;
                    continue;
                }
                if (sinceClaim < ClaimGrace && pool.Ready.Count * 2 > pool.Size)
                {
                    // A claim just now, and the pool over half full: the claimer's first command goes first. Below
                    // half (a burst of claims, which would otherwise keep deferring it) the refill goes at once.
                    var wait = ClaimGrace - sinceClaim;
                    nextRetry = nextRetry is { } r && r < wait ? r : wait;
                    continue;
                }
                while (pool.Ready.Count + Volatile.Read(ref pool.Starting) < pool.Size && Volatile.Read(ref _inFlight) < _options.Pools.RefillConcurrency)
                {
                    Interlocked.Increment(ref pool.Starting);
                    Interlocked.Increment(ref _inFlight);
                    var start = StartMemberAsync(pool, stopping);
                    _starts.TryAdd(start, 0);
                    _ = start.ContinueWith(t => _starts.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                }
            }
            try
            {
                // Woken by a claim or a finished start; the timeout bounds the wait for a pool in backoff.
                await _wake.WaitAsync(nextRetry ?? TimeSpan.FromSeconds(5), stopping);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task StartMemberAsync(Pool pool, CancellationToken stopping)
    {
        await Task.Yield();
        var clock = Stopwatch.StartNew();
        string? sandboxId = null;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            timeout.CancelAfter(_options.StartTimeout);
            var template = await _templates.FindAsync(pool.Name, timeout.Token)
                ?? throw new TemplateNotFoundException(pool.Name);
            var token = SandboxIds.NewToken();
            sandboxId = SandboxIds.NewId();
            // Before the start, so that runc joins the cgroup with these shares and the agent starts in the background;
            // but only while the pool has slack: a pool at half or less is what creates are about to wait for.
            if (pool.Ready.Count * 2 > pool.Size)
            {
                await _runtime.SetCpuPriorityAsync(sandboxId, background: true, timeout.Token);
            }
            var spec = new SandboxSpec
            {
                SandboxId = sandboxId,
                TemplateLayers = template.Layers,
                Limits = PoolLimits,
                AgentAccessToken = token,
                DefaultUser = template.DefaultUser,
                DefaultWorkdir = template.Workdir,
                AllowInternetAccess = true,
                Isolation = template.Isolation,
            };
            var started = await _runtime.StartAsync(spec, timeout.Token);
            if (_agentClient.Value is { } client)
            {
                await PoolAgentCalls.WarmAsync(client.Invoker, started.SandboxId, token, template.DefaultUser, timeout.Token);
                Interlocked.Increment(ref _warmed);
            }
            // A template with a start command (code-interpreter's server) is ready only once its ready check passed,
            // so that a claim is ready at once, as a cold create is when it returns.
            if (_startup.Value is { } startup)
            {
                await startup.PrepareAsync(started.SandboxId, template, token, timeout.Token);
            }
            // It waits in the background whatever it started at.
            await _runtime.SetCpuPriorityAsync(started.SandboxId, background: true, timeout.Token);
            var member = new PoolMember(started.SandboxId, pool.Name, template.TemplateId, template.Layers, spec.Limits, token, DateTimeOffset.UtcNow,
                started.Tier ?? _runtime.Name);
            if (stopping.IsCancellationRequested)
            {
                await DestroyAsync(member.SandboxId);
                return;
            }
            pool.TemplateId = template.TemplateId;
            pool.Isolation = member.Isolation;
            pool.Ready.Enqueue(member);
            pool.FailureStreak = 0;
            _metrics.Value?.PoolRefill(pool.Name, ok: true);
            PoolsLog.MemberReady(_logger, pool.Name, member.SandboxId, clock.ElapsedMilliseconds, pool.Ready.Count);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // Shutting down: the runtime removed a start it cancelled; a cgroup made before it or a sandbox being
            // warmed is removed here.
            if (sandboxId is not null)
            {
                await DestroyAsync(sandboxId);
            }
        }
        catch (Exception ex)
        {
            _metrics.Value?.PoolRefill(pool.Name, ok: false);
            // Whatever of it exists (its cgroup made before the start, or a sandbox whose warm-up failed) goes.
            if (sandboxId is not null)
            {
                await DestroyAsync(sandboxId);
            }
            // Backoff so that a broken template or a full host does not turn the refiller into a busy loop.
            pool.FailureStreak = Math.Min(pool.FailureStreak + 1, 16);
            var delay = TimeSpan.FromMilliseconds(Math.Min(MaxBackoff.TotalMilliseconds, 250 * Math.Pow(2, pool.FailureStreak - 1)));
            pool.RetryAt = Stopwatch.GetTimestamp() + (long)(delay.TotalSeconds * Stopwatch.Frequency);
            PoolsLog.MemberStartFailed(_logger, pool.Name, (long)delay.TotalMilliseconds, ex);
        }
        finally
        {
            Interlocked.Decrement(ref pool.Starting);
            Interlocked.Decrement(ref _inFlight);
            ReleaseWake();
        }
    }

    private void ReleaseWake()
    {
        try
        {
            _wake.Release();
        }
        catch (ObjectDisposedException)
        {
            // disposed at shutdown
        }
    }

    private async Task DestroyAsync(string sandboxId)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await _runtime.DestroyAsync(sandboxId, timeout.Token);
        }
        catch (Exception ex)
        {
            PoolsLog.DestroyFailed(_logger, sandboxId, ex);
        }
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await StopAsync(timeout.Token);
        _stopping.Dispose();
    }

    private sealed class Pool(string name, int size)
    {
        public string Name { get; } = name;

        public int Size { get; } = size;

        public ConcurrentQueue<PoolMember> Ready { get; } = new();

        /// <summary>The id its name resolved to when a member last started (null before): what creates are matched by.</summary>
        public volatile string? TemplateId;

        /// <summary>The tier its members run on (set with <see cref="TemplateId"/>): a create resolved to another tier does not claim from it.</summary>
        public volatile string? Isolation;

        public int Starting;

        public int FailureStreak;

        public long RetryAt;
    }
}
