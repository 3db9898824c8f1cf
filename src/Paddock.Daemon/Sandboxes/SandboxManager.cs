using System.Collections.Concurrent;
using System.Diagnostics;
using Paddock.Daemon.Pools;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Store;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Sandboxes;

/// <summary>What a validated create asks for.</summary>
internal sealed record CreateSandboxCommand
{
    public required string Template { get; init; }

    public required int TimeoutSeconds { get; init; }

    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    public IReadOnlyDictionary<string, string> EnvVars { get; init; } = new Dictionary<string, string>();

    /// <summary>E2B's <c>secure</c>: the agent requires an access token.</summary>
    public bool Secure { get; init; } = true;

    public bool? AllowInternetAccess { get; init; }

    /// <summary>The egress policy (allowOut/denyOut/allow_internet_access); null: allow all.</summary>
    public Networking.EgressPolicy? Egress { get; init; }

    /// <summary>False: ports other than the agent's need the traffic access token.</summary>
    public bool AllowPublicTraffic { get; init; } = true;

    public bool AutoPause { get; init; }

    /// <summary>E2B's <c>autoPauseMemory</c>: whether the pause at the deadline keeps memory (default true).</summary>
    public bool AutoPauseMemory { get; init; } = true;

    /// <summary>E2B's <c>autoResume.enabled</c>.</summary>
    public bool AutoResume { get; init; }

    public required int CpuCount { get; init; }

    public required int MemoryMB { get; init; }

    public required int DiskSizeMB { get; init; }

    /// <summary>The caller's team: it owns the sandbox, its limits bound the create, and it may start from its own
    /// templates and public ones.</summary>
    public string TeamId { get; init; } = SandboxRecord.DefaultTeamId;

    public TeamLimits TeamLimits { get; init; } = TeamLimits.None;

    /// <summary>The isolation tier asked for; null: the team's, else the template's, else the daemon's (<see cref="IsolationChoice"/>).</summary>
    public string? Isolation { get; init; }

    /// <summary>The create's <c>volumeMounts</c>, checked (names and paths); resolved by the API into <see cref="Volumes"/>.</summary>
    public IReadOnlyList<Paddock.Daemon.Volumes.VolumeMountRequest> VolumeMounts { get; init; } = [];

    /// <summary>The team's volumes resolved for this create and held against deletion while it starts.</summary>
    public Paddock.Daemon.Volumes.VolumeLease Volumes { get; init; } = Paddock.Daemon.Volumes.VolumeLease.Empty;
}

/// <summary>
/// The sandbox lifecycle: create, look up, move the deadline, kill. It keeps the running sandboxes in memory (the proxy
/// looks one up on every request) and every change in the store, and owns the one rule that decides who kills a
/// sandbox: whoever removes it from the live set.
/// A kill answers once every process of the sandbox is gone; the removal of the rest (runc's state, cgroups,
/// network namespace, mounts, directory: ~150 ms here) runs in the background, a few at a time, with the sandbox
/// still counted against the host's capacity (--max-sandboxes) until it is done. Its team's share is given back when
/// the kill answers: for the team it is gone, and E2B's clients expect a kill to free their slot at once.
/// Disposal waits for the teardowns.
/// </summary>
internal sealed partial class SandboxManager : IAsyncDisposable
{
    public const int AgentPort = 49983;

    private readonly ConcurrentDictionary<string, SandboxRecord> _live = new(StringComparer.Ordinal);

    // Sandboxes being killed right now, with why: between leaving the live set and their record saying so.
    private readonly ConcurrentDictionary<string, string> _ending = new(StringComparer.Ordinal);
    // Cancelled when a sandbox leaves _live (RunningToken); made on first ask, so a sandbox nobody talks to has none.
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _lifetimes = new(StringComparer.Ordinal);
    private readonly ISandboxRuntime _runtime;
    private readonly IIsolationTiers _tiers;
    private readonly TemplateRegistry _templates;
    private readonly ISandboxStore _store;
    private readonly SandboxJournal _journal;
    private readonly DeadlineScheduler _scheduler;
    private readonly TimeProvider _time;
    private readonly DaemonOptions _options;
    private readonly ILogger<SandboxManager> _logger;
    private readonly TeamUsage _teamUsage = new();
    private readonly WarmPools? _pools;
    private readonly IdleFreezer? _freezer;
    private readonly Observability.DaemonMetrics? _metrics;
    private readonly StartImages? _startImages;

    // Background teardowns of killed sandboxes, by id; bounded in concurrency so that a burst of kills does not take
    // every core from the sandboxes still running.
    // The volumes a sandbox mounts: a fork refuses a source that has any (a volume is shared, not copied).
    private readonly Volumes.VolumeManager? _volumes;
    private readonly ConcurrentDictionary<string, Task> _teardowns = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _teardownGate = new(2);
    private int _reserved;

    public SandboxManager(ISandboxRuntime runtime, IIsolationTiers tiers, TemplateRegistry templates, ISandboxStore store, SandboxJournal journal,
        DeadlineScheduler scheduler, TimeProvider time, DaemonOptions options, ILogger<SandboxManager> logger, WarmPools? pools = null,
        IdleFreezer? freezer = null, Observability.DaemonMetrics? metrics = null, Volumes.VolumeManager? volumes = null,
        StartImages? startImages = null)
    {
        _startImages = startImages;
        _volumes = volumes;
        _tiers = tiers;
        _metrics = metrics;
        _pools = pools;
        _freezer = freezer;
        _runtime = runtime;
        _templates = templates;
        _store = store;
        _journal = journal;
        _scheduler = scheduler;
        _time = time;
        _options = options;
        _logger = logger;
    }

    /// <summary>The <see cref="CreateTrace.Path"/> of a create restored from its template's start image (no start command to run).</summary>
    public const string StartImagePath = "start-image";

    /// <summary>The isolation tier of sandboxes that choose none.</summary>
    public string RuntimeName => _tiers.DefaultTier;

    /// <summary>Running sandboxes now (a snapshot).</summary>
    public IReadOnlyCollection<SandboxRecord> Running => [.. _live.Values];

    public bool TryGetRunning(string sandboxId, out SandboxRecord record) => _live.TryGetValue(sandboxId, out record!);

    /// <summary>
    /// A token that is cancelled when <paramref name="sandboxId"/> stops running here (killed, lost, timed out or
    /// paused); <see cref="CancellationToken.None"/> when it does not run now. What is forwarded to a sandbox is bound
    /// to it: a connection to a sandbox that died may never fail by itself (a gVisor sandbox's end of it lived in its
    /// Sentry, and no host kernel answers for it once that is gone), so only the daemon's noticing the end can end it.
    /// </summary>
    public CancellationToken RunningToken(string sandboxId)
    {
        if (!_live.ContainsKey(sandboxId))
        {
            return CancellationToken.None;
        }
        var lifetime = _lifetimes.GetOrAdd(sandboxId, static _ => new CancellationTokenSource());
        if (!_live.ContainsKey(sandboxId))
        {
            // It left between the two looks, perhaps before its lifetime was made: nothing else would cancel this one.
            EndLifetime(sandboxId);
        }
        return lifetime.Token;
    }

    /// <summary>Cancels what <see cref="RunningToken"/> handed out for a sandbox that just left the live set.</summary>
    private void EndLifetime(string sandboxId)
    {
        if (_lifetimes.TryRemove(sandboxId, out var lifetime))
        {
            // Not disposed: a request may still be linking to its token. The callbacks (aborted connections) run on the
            // thread pool, not under the kill.
            _ = lifetime.CancelAsync();
        }
    }

    public SandboxRecord GetRunning(string sandboxId) =>
        _live.TryGetValue(sandboxId, out var record) ? record : throw new UnknownSandboxException(sandboxId);

    /// <summary>What a team's running and starting sandboxes hold now.</summary>
    public TeamTotals UsageOf(string teamId) => _teamUsage.Of(teamId);

    /// <summary>Sandboxes counted against --max-sandboxes now: starting, running, and killed ones still tearing down.</summary>
    public int Reserved => Volatile.Read(ref _reserved);

    /// <summary>Killed sandboxes whose pieces are still being removed in the background (they still count against the host's capacity).</summary>
    public int PendingTeardowns => _teardowns.Count;

    /// <summary>Waits (bounded by <paramref name="cancellationToken"/>) until no teardown of a killed sandbox is running.</summary>
    public async Task WaitForTeardownsAsync(CancellationToken cancellationToken)
    {
        // Bounded: a teardown started meanwhile is waited for in the next round, and kills stop at shutdown.
        for (var round = 0; round < 100 && !_teardowns.IsEmpty; round++)
        {
            await Task.WhenAll(_teardowns.Values).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Why a sandbox that is being killed right now is being killed.</summary>
    public bool TryGetEnding(string sandboxId, out string reason) => _ending.TryGetValue(sandboxId, out reason!);

    /// <summary>
    /// Starts a sandbox, or claims one from the template's warm pool; returns its record once the agent inside
    /// answers. <paramref name="trace"/> collects where the time went.
    /// </summary>
    public async Task<SandboxRecord> CreateAsync(CreateSandboxCommand command, CancellationToken cancellationToken, CreateTrace? trace = null)
    {
        using var own = trace is null ? new CreateTrace() : null;
        trace ??= own!;
        var stopwatch = Stopwatch.StartNew();
        try
        {
            var record = await CreateCoreAsync(command, trace, cancellationToken);
            _metrics?.CreateSucceeded(trace.Path ?? "cold", stopwatch.Elapsed);
            return record;
        }
        catch (Exception ex)
        {
            _metrics?.CreateFailed(ex switch
            {
                TemplateNotFoundException => "template_not_found",
                SandboxCapacityException => "capacity",
                TeamLimitException => "team_limit",
                OperationCanceledException => "cancelled",
                SandboxCreateException => "start_failed",
                _ => "error",
            }, trace.Path ?? "none");
            throw;
        }
    }

    private async Task<SandboxRecord> CreateCoreAsync(CreateSandboxCommand command, CreateTrace trace, CancellationToken cancellationToken)
    {
        var template = await _templates.FindAsync(command.Template, command.TeamId, cancellationToken)
            ?? throw new TemplateNotFoundException(command.Template);
        var isolation = IsolationChoice.Resolve(_tiers, command.Isolation, command.TeamLimits.Isolation, template.Isolation);
        // The team's share first, then the host's; both are given back on every path that does not end running.
        _teamUsage.Reserve(command.TeamId, command.TeamLimits, command.CpuCount, command.MemoryMB);
        trace.Mark("template");
        if (Interlocked.Increment(ref _reserved) > _options.MaxSandboxes)
        {
            Interlocked.Decrement(ref _reserved);
            _teamUsage.Release(command.TeamId, command.CpuCount, command.MemoryMB);
            throw new SandboxCapacityException(_options.MaxSandboxes);
        }
        var reservationHeld = true;
        try
        {
            var limits = new ResourceLimits(command.CpuCount, command.MemoryMB * 1024L * 1024L, _options.MaxPids, command.DiskSizeMB * 1024L * 1024L);
            // A pool member was started without volumes, and mounts cannot be added to a running sandbox.
            // A memory snapshot on a tier that can restore it: a restore of its capture (issue 15), never a pool member.
            var memoryImage = template.MemoryImage is { } image && _tiers.CanFork(isolation) ? image : null;
            if (memoryImage is null && command.Volumes.IsEmpty && _pools?.TryTake(template, limits, isolation) is { } member)
            {
                trace.Mark("pool-claim");
                if (await TryClaimAsync(member, template, command, trace, cancellationToken) is { } claimed)
                {
                    reservationHeld = false;
                    trace.Path = "pooled";
                    return claimed;
                }
            }
            trace.Path = "cold";
            // A template with a start command on a tier that restores memory: a restore of its start image once there is
            // one (its processes running already; the caller runs no start command then), else a cold start that asks
            // for one in the background (StartImages). Not restored with the create's own variables: a cold start gives
            // them to the start command, and its processes keep the environment they started with (measured:
            // code-interpreter's kernels saw none of the create's envVars in a restored sandbox), so such a create runs
            // the command itself (and still asks for the image, for the creates without).
            using var startImage = memoryImage is null && command.Volumes.IsEmpty && template.StartCmd is { Length: > 0 } && _tiers.CanFork(isolation)
                ? _startImages?.Find(template, limits, isolation, restore: command.EnvVars.Count == 0)
                : null;
            if (startImage is not null)
            {
                trace.Path = StartImagePath;
                trace.Mark("start-image");
            }

            var now = Now();
            var record = new SandboxRecord
            {
                SandboxId = SandboxIds.NewId(),
                TeamId = command.TeamId,
                TemplateId = template.TemplateId,
                Alias = template.Alias,
                RuntimeName = isolation,
                State = SandboxState.Starting,
                Metadata = command.Metadata,
                CpuCount = command.CpuCount,
                MemoryMB = command.MemoryMB,
                DiskSizeMB = command.DiskSizeMB,
                MaxPids = _options.MaxPids,
                StartedAt = now,
                EndAt = now.AddSeconds(command.TimeoutSeconds),
                EnvdAccessToken = command.Secure ? SandboxIds.NewToken() : null,
                TrafficAccessToken = command.AllowPublicTraffic ? null : SandboxIds.NewToken(),
                AllowInternetAccess = command.AllowInternetAccess,
                AutoPause = command.AutoPause,
            AutoPauseMemory = command.AutoPauseMemory,
            AutoResume = command.AutoResume,
            };
            await _store.InsertAsync(record, cancellationToken);
            // Before the start: from here on a volume delete sees this sandbox as its user.
            await command.Volumes.RecordAsync(record.SandboxId, cancellationToken);
            trace.Mark("store-insert");
            await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Info,
                $"creating from template {template.TemplateId} on the {isolation} tier with {record.CpuCount} CPUs, {record.MemoryMB} MiB memory, " +
                $"{record.DiskSizeMB} MiB disk, {record.MaxPids} processes, timeout {command.TimeoutSeconds} s, " +
                $"{command.EnvVars.Count} environment variables, secure={command.Secure}, internet={command.AllowInternetAccess?.ToString() ?? "default"}");
            if (startImage is not null)
            {
                await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Info,
                    $"restoring the start image of template {template.TemplateId}: the processes its start command started run on from its ready check; the command does not run again");
            }
            if (memoryImage is not null)
            {
                await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Info,
                    $"restoring the memory snapshot {template.TemplateId}: its processes run on where the snapshot took them, with its CPU, memory and disk limits");
            }
            else if (template.MemoryImage is not null)
            {
                await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Warn,
                    $"template {template.TemplateId} is a memory snapshot, but the {isolation} tier cannot restore memory: it starts afresh on the snapshot's files");
            }
            if (command.AutoPause && _tiers.PauseSupportOf(isolation) == PauseSupport.None)
            {
                await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Warn,
                    $"autoPause was requested, but the {isolation} tier cannot pause: the sandbox will be killed at its timeout");
            }

            var spec = new SandboxSpec
            {
                SandboxId = record.SandboxId,
                TemplateLayers = template.Layers,
                Limits = limits,
                EnvVars = EnvironmentOf(template, command),
                AgentAccessToken = record.EnvdAccessToken,
                DefaultUser = template.DefaultUser,
                DefaultWorkdir = template.Workdir,
                AllowInternetAccess = command.AllowInternetAccess ?? true,
                Egress = command.Egress,
                MarkStep = trace.Mark,
                Isolation = isolation,
                Mounts = command.Volumes.Mounts,
            };
            trace.Mark("journal");
            var stopwatch = Stopwatch.StartNew();
            RuntimeSandbox started;
            using var startTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            try
            {
                startTimeout.CancelAfter(_options.StartTimeout);
                started = (memoryImage ?? startImage?.Path) is { } restored
                    ? await RestoreMemoryAsync(restored, spec, startTimeout.Token)
                    : await _runtime.StartAsync(spec, startTimeout.Token);
            }
            catch (Exception ex)
            {
                // Which token fired tells a cancelled request from a slow runtime; any other cancellation is the runtime's own failure.
                var reason = ex is OperationCanceledException && cancellationToken.IsCancellationRequested
                    ? "failed to start: the create request was cancelled"
                    : ex is OperationCanceledException && startTimeout.IsCancellationRequested
                        ? $"failed to start: the runtime took longer than {_options.StartTimeout.TotalSeconds:0} s"
                        : $"failed to start: {ex.Message}";
                SandboxesLog.StartFailed(_logger, record.SandboxId, template.TemplateId, ex);
                await _store.UpdateAsync(record with { State = SandboxState.Killed, EndedAt = Now(), EndReason = reason }, CancellationToken.None);
                await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Error, reason);
                if (ex is OperationCanceledException && cancellationToken.IsCancellationRequested)
                {
                    throw;
                }
                throw new SandboxCreateException(record.SandboxId, $"sandbox could not be started: {reason}", ex);
            }

            // The lifetime counts from when the sandbox is usable, not from when the request arrived.
            var startedAt = Now();
            record = record with
            {
                State = SandboxState.Running,
                StartedAt = startedAt,
                EndAt = startedAt.AddSeconds(command.TimeoutSeconds),
            };
            await _store.UpdateAsync(record, CancellationToken.None);
            trace.Mark("store-update");
            _live[record.SandboxId] = record;
            _scheduler.Schedule(record.SandboxId, record.EndAt);
            reservationHeld = false;
            SandboxesLog.Started(_logger, record.SandboxId, template.TemplateId, isolation, stopwatch.ElapsedMilliseconds, record.EndAt);
            await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Info,
                $"started by {isolation} in {stopwatch.ElapsedMilliseconds} ms{(started.HostPid is { } pid ? $" (host pid {pid})" : "")}; it will be killed at {record.EndAt:O}");
            trace.Mark("journal");
            SandboxesLog.CreateSteps(_logger, record.SandboxId, "cold", trace.ToString());
            return record;
        }
        finally
        {
            if (reservationHeld)
            {
                Interlocked.Decrement(ref _reserved);
                _teamUsage.Release(command.TeamId, command.CpuCount, command.MemoryMB);
            }
        }
    }

    /// <summary>
    /// Starts a sandbox as a restore of a memory snapshot, then gives its restored agent (which still holds the
    /// snapshot's source's token and variables) the new sandbox's own with envd's <c>/init</c>, as a fork copy's is, before
    /// anyone has its id. On failure nothing of it is left.
    /// </summary>
    private async Task<RuntimeSandbox> RestoreMemoryAsync(string image, SandboxSpec spec, CancellationToken cancellationToken)
    {
        var sourceToken = MemoryImages.ReadAgentToken(image);
        var started = await _runtime.RestoreMemoryAsync(image, spec, cancellationToken);
        try
        {
            await Pools.AgentInit.SendAsync(_runtime, spec.SandboxId, sourceToken, spec.EnvVars, spec.AgentAccessToken, cancellationToken);
        }
        catch
        {
            using var destroyTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await _runtime.DestroyAsync(spec.SandboxId, destroyTimeout.Token);
            throw;
        }
        spec.MarkStep?.Invoke("memory-restore");
        return started;
    }

    /// <summary>The template's environment (a built template's ENV steps) below the create's own.</summary>
    private static IReadOnlyDictionary<string, string> EnvironmentOf(SandboxTemplate template, CreateSandboxCommand command) =>
        template.EnvVars is { Count: > 0 } templateEnv
            ? templateEnv.Concat(command.EnvVars).GroupBy(e => e.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Last().Value, StringComparer.Ordinal)
            : command.EnvVars;

    /// <summary>
    /// Makes a warm pool sandbox the caller's: its variables and token through the agent's /init, then its record
    /// (written once, already running: a crash before it leaves a sandbox without a record, which recovery destroys).
    /// Null when the hand-over failed (the member is destroyed by then): the caller starts one cold instead.
    /// </summary>
    private async Task<SandboxRecord?> TryClaimAsync(PoolMember member, SandboxTemplate template, CreateSandboxCommand command, CreateTrace trace, CancellationToken cancellationToken)
    {
        // The member's pool token becomes the claimer's access token: only the daemon has known it, it was made like any
        // other, and keeping it spares the agent a POST /init when the claimer sets no variables.
        var envdToken = command.Secure ? member.PoolToken : null;
        try
        {
            // A pool member runs with the default policy (allow all); anything else is applied before it is handed over.
            var egress = command.Egress ?? (command.AllowInternetAccess == false ? Networking.EgressPolicy.DenyAll : null);
            if (egress is { AllowsEverything: true })
            {
                egress = null;
            }
            await _pools!.HandOverAsync(member, EnvironmentOf(template, command), envdToken, egress, cancellationToken);
        }
        catch (Exception ex) when (!(ex is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            trace.Mark("pool-handover-failed");
            return null;
        }
        trace.Mark("pool-init");
        var now = Now();
        var record = new SandboxRecord
        {
            SandboxId = member.SandboxId,
            TeamId = command.TeamId,
            TemplateId = template.TemplateId,
            Alias = template.Alias,
            RuntimeName = member.Isolation,
            State = SandboxState.Running,
            Metadata = command.Metadata,
            CpuCount = command.CpuCount,
            MemoryMB = command.MemoryMB,
            DiskSizeMB = command.DiskSizeMB,
            MaxPids = _options.MaxPids,
            StartedAt = now,
            EndAt = now.AddSeconds(command.TimeoutSeconds),
            EnvdAccessToken = envdToken,
            TrafficAccessToken = command.AllowPublicTraffic ? null : SandboxIds.NewToken(),
            AllowInternetAccess = command.AllowInternetAccess,
            AutoPause = command.AutoPause,
            AutoPauseMemory = command.AutoPauseMemory,
            AutoResume = command.AutoResume,
        };
        try
        {
            await _store.InsertAsync(record, CancellationToken.None);
        }
        catch
        {
            // It has the caller's settings now: it can never go back to the pool.
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await _runtime.DestroyAsync(member.SandboxId, timeout.Token);
            throw;
        }
        trace.Mark("store-insert");
        _live[record.SandboxId] = record;
        _scheduler.Schedule(record.SandboxId, record.EndAt);
        SandboxesLog.Started(_logger, record.SandboxId, template.TemplateId, member.Isolation, (long)trace.TotalMilliseconds, record.EndAt);
        await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Info,
            $"claimed from the warm pool of template {template.TemplateId} (started {member.ReadyAt:O}) with {record.CpuCount} CPUs, " +
            $"{record.MemoryMB} MiB memory, {record.DiskSizeMB} MiB disk, {record.MaxPids} processes, timeout {command.TimeoutSeconds} s, " +
            $"{command.EnvVars.Count} environment variables, secure={command.Secure}; it will be killed at {record.EndAt:O}");
        trace.Mark("journal");
        SandboxesLog.CreateSteps(_logger, record.SandboxId, "pooled", trace.ToString());
        return record;
    }

    /// <summary>Sets the deadline to <paramref name="timeoutSeconds"/> from now (E2B's POST /timeout: it can shorten too).</summary>
    public async Task<SandboxRecord> SetTimeoutAsync(string sandboxId, int timeoutSeconds, CancellationToken cancellationToken)
    {
        var endAt = Now().AddSeconds(timeoutSeconds);
        var record = UpdateLive(sandboxId, r => r with { EndAt = endAt });
        await _store.SetDeadlineAsync(sandboxId, endAt, cancellationToken);
        _scheduler.Schedule(sandboxId, endAt);
        SandboxesLog.DeadlineMoved(_logger, sandboxId, endAt);
        await _journal.WriteAsync(sandboxId, SandboxLogLevel.Info, $"timeout set to {timeoutSeconds} s: it will be killed at {endAt:O}");
        return record;
    }

    /// <summary>E2B's connect: the sandbox must be running; a timeout only ever extends the deadline.</summary>
    public async Task<SandboxRecord> ConnectAsync(string sandboxId, int? timeoutSeconds, CancellationToken cancellationToken)
    {
        var current = GetRunning(sandboxId);
        if (timeoutSeconds is not { } seconds)
        {
            return current;
        }
        var endAt = Now().AddSeconds(seconds);
        if (endAt <= current.EndAt)
        {
            return current;
        }
        var record = UpdateLive(sandboxId, r => r.EndAt >= endAt ? r : r with { EndAt = endAt });
        if (record.EndAt == endAt)
        {
            await _store.SetDeadlineAsync(sandboxId, endAt, cancellationToken);
            _scheduler.Schedule(sandboxId, endAt);
            SandboxesLog.DeadlineMoved(_logger, sandboxId, endAt);
            await _journal.WriteAsync(sandboxId, SandboxLogLevel.Info, $"connect extended the timeout: it will be killed at {endAt:O}");
        }
        return record;
    }

    /// <summary>
    /// Kills a running sandbox, or a paused one unless <paramref name="runningOnly"/>. False when no such sandbox has
    /// this id (or someone else is killing it).
    /// </summary>
    /// <param name="runningOnly">
    /// For the reports that a sandbox stopped running on its own (the lost-sandbox sweep, the agent's exit): a paused
    /// sandbox runs nothing by design. The sweep lists the live sandboxes, then the runtime's; a pause that finished in
    /// between left a sandbox missing from the runtime's list that was paused by the time the sweep killed it (the pause
    /// bench: a pause answered 204, the connect after it 404 "lost").
    /// </param>
    public async Task<bool> KillAsync(string sandboxId, string reason, bool runningOnly = false)
    {
        if (_paused.ContainsKey(sandboxId))
        {
            return !runningOnly && await KillPausedAsync(sandboxId, reason);
        }
        // Whoever takes the ending slot kills; a second caller (a DELETE racing the deadline) backs off.
        if (!_live.ContainsKey(sandboxId) || !_ending.TryAdd(sandboxId, reason))
        {
            return false;
        }
        if (!_live.TryRemove(sandboxId, out var record))
        {
            _ending.TryRemove(sandboxId, out _);
            return false;
        }
        EndLifetime(sandboxId);
        _scheduler.Cancel(sandboxId);
        _metrics?.Killed(reason.StartsWith("killed by API", StringComparison.Ordinal) ? "api"
            : reason.StartsWith("timed out", StringComparison.Ordinal) ? "timeout"
            : reason.StartsWith("lost", StringComparison.Ordinal) ? "lost"
            : "other");
        var endReason = reason;
        var level = SandboxLogLevel.Info;
        // The client may go away; the kill must still finish, but not hang forever on a wedged runtime.
        var tearDownLater = false;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            // Awake for the kill: a freeze in progress finishes first, then it is thawed and stays so (the runtime's
            // kill thaws too, but only the lease keeps the idle freezer from freezing it again under the kill).
            using var awake = _freezer is null ? default : await _freezer.HoldAwakeAsync(sandboxId, timeout.Token);
            tearDownLater = await _runtime.KillProcessesAsync(sandboxId, timeout.Token);
        }
        catch (Exception ex)
        {
            // The destroy below kills them as well, and reports what fails there.
            SandboxesLog.KillProcessesFailed(_logger, sandboxId, ex);
        }
        if (tearDownLater)
        {
            _teamUsage.Release(record.TeamId, record.CpuCount, record.MemoryMB);
        }
        else
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                await _runtime.DestroyAsync(sandboxId, timeout.Token);
            }
            catch (Exception ex)
            {
                SandboxesLog.DestroyFailed(_logger, sandboxId, ex);
                endReason = $"{reason}; destroying it failed ({ex.Message}), the next daemon start will retry";
                level = SandboxLogLevel.Error;
            }
            finally
            {
                Interlocked.Decrement(ref _reserved);
                _teamUsage.Release(record.TeamId, record.CpuCount, record.MemoryMB);
            }
        }
        SandboxesLog.Killed(_logger, sandboxId, endReason);
        try
        {
            // The log line first: once the record says killed, its log is complete but for a teardown failure.
            await _journal.WriteAsync(sandboxId, level, "killed: " + endReason);
            await _store.UpdateAsync(record with { State = SandboxState.Killed, EndedAt = Now(), EndReason = endReason }, CancellationToken.None);
        }
        finally
        {
            _ending.TryRemove(sandboxId, out _);
            if (tearDownLater)
            {
                StartTeardown(record);
            }
        }
        return true;
    }

    /// <summary>Removes the pieces of a killed sandbox (no process of it is left) in the background; see the class.</summary>
    private void StartTeardown(SandboxRecord record)
    {
        var teardown = TeardownAsync(record);
        _teardowns[record.SandboxId] = teardown;
        _ = teardown.ContinueWith(_ => _teardowns.TryRemove(record.SandboxId, out var _), CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private async Task TeardownAsync(SandboxRecord record)
    {
        await Task.Yield();
        // No cancellation: shutdown waits for these, and each destroy is bounded by its own timeout.
        await _teardownGate.WaitAsync(CancellationToken.None);
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await _runtime.DestroyAsync(record.SandboxId, timeout.Token);
        }
        catch (Exception ex)
        {
            // Its processes are gone; what is left on the host (mounts, cgroups, directory) the next start removes.
            SandboxesLog.DestroyFailed(_logger, record.SandboxId, ex);
            await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Error,
                $"removing what it left on the host failed ({ex.Message}); the next daemon start will retry");
        }
        finally
        {
            _teardownGate.Release();
            // The host's capacity; the team's share was given back when the kill answered.
            Interlocked.Decrement(ref _reserved);
        }
    }

    /// <summary>
    /// Waits for the teardowns of killed sandboxes (ten minutes at most), so that a stop right after a kill leaves
    /// nothing: nothing else runs any more, so they may use more cores than while sandboxes run (a stop after killing
    /// 1,000 sandboxes at two at a time took over a minute and was cut short at the old one-minute bound).
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (!_teardowns.IsEmpty)
        {
            SandboxesLog.WaitingForTeardowns(_logger, _teardowns.Count);
            _teardownGate.Release(Math.Max(2, Environment.ProcessorCount * 2));
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        try
        {
            await WaitForTeardownsAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            // What is still left the next daemon start removes (its leftover sweep).
        }
    }

    /// <summary>Called by the scheduler when a deadline passes.</summary>
    public async Task ExpireAsync(string sandboxId, CancellationToken cancellationToken)
    {
        // A POST /timeout may have moved the deadline between the scheduler's check and now.
        if (_live.TryGetValue(sandboxId, out var record) && record.EndAt > Now())
        {
            _scheduler.Schedule(sandboxId, record.EndAt);
            return;
        }
        if (record?.AutoPause == true)
        {
            await ExpireWithPauseAsync(record);
            return;
        }
        await KillAsync(sandboxId, "timed out");
    }

    /// <summary>
    /// Kills (and so cleans up after) running sandboxes the runtime no longer has alive: their agent or init exited,
    /// or something outside the daemon killed them. Without this they would stay listed until their deadline.
    /// </summary>
    public async Task<int> ReapLostAsync(CancellationToken cancellationToken)
    {
        if (_live.IsEmpty)
        {
            return 0;
        }
        var snapshot = _live.Keys.ToList();
        var alive = (await _runtime.ListAsync(cancellationToken)).Select(s => s.SandboxId).ToHashSet(StringComparer.Ordinal);
        var reaped = 0;
        foreach (var id in snapshot)
        {
            if (!alive.Contains(id) && await KillAsync(id, "lost: it stopped running on its own (its agent or init exited, or it was killed outside paddockd)", runningOnly: true))
            {
                reaped++;
            }
        }
        return reaped;
    }

    /// <summary>Resource use now; throws <see cref="UnknownSandboxException"/> if it is not running.</summary>
    public async Task<SandboxUsage> GetUsageAsync(string sandboxId, CancellationToken cancellationToken)
    {
        GetRunning(sandboxId);
        return await _runtime.GetUsageAsync(sandboxId, cancellationToken)
            ?? throw new UnknownSandboxException(sandboxId, "the runtime no longer has it");
    }

    /// <summary>Replaces the egress policy of a running sandbox (PUT /sandboxes/{id}/network).</summary>
    public async Task UpdateNetworkAsync(string sandboxId, Networking.EgressPolicy policy, CancellationToken cancellationToken)
    {
        GetRunning(sandboxId);
        await _runtime.UpdateNetworkAsync(sandboxId, policy, cancellationToken);
        await _journal.WriteAsync(sandboxId, SandboxLogLevel.Info,
            $"network policy changed: allowOut [{string.Join(", ", policy.AllowOut.Select(n => n.ToString()).Concat(policy.AllowDomains))}], denyOut [{string.Join(", ", policy.DenyOut)}]");
    }

    /// <summary>Opens a stream to <paramref name="port"/> of a running sandbox (for the proxy).</summary>
    public ValueTask<Stream> ConnectToPortAsync(string sandboxId, int port, CancellationToken cancellationToken) =>
        _runtime.ConnectAsync(sandboxId, port, cancellationToken);

    /// <summary>Adds a sandbox found running at start-up (recovery).</summary>
    internal void Adopt(SandboxRecord record)
    {
        if (_live.TryAdd(record.SandboxId, record))
        {
            Interlocked.Increment(ref _reserved);
            _teamUsage.Add(record.TeamId, record.CpuCount, record.MemoryMB);
            _scheduler.Schedule(record.SandboxId, record.EndAt);
        }
    }

    // Whole milliseconds: what the store keeps, so a record reads the same before and after a restart.
    private DateTimeOffset Now() => DateTimeOffset.FromUnixTimeMilliseconds(_time.GetUtcNow().ToUnixTimeMilliseconds());

    private SandboxRecord UpdateLive(string sandboxId, Func<SandboxRecord, SandboxRecord> change)
    {
        while (true)
        {
            if (!_live.TryGetValue(sandboxId, out var current))
            {
                throw new UnknownSandboxException(sandboxId);
            }
            var updated = change(current);
            if (_live.TryUpdate(sandboxId, updated, current))
            {
                return updated;
            }
        }
    }
}
