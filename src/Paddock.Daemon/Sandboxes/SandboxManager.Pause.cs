using System.Collections.Concurrent;
using System.Diagnostics;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// Pause and resume (issue 15). A paused sandbox leaves the live set (the proxy and every running-only route stop
/// seeing it), gives back its share of the host's and its team's running capacity, and waits in <see cref="_paused"/>
/// and in the store with state "paused" until a resume (connect), an autoResume request through the proxy, or a kill.
/// The same ending slot (<see cref="_ending"/>) that orders kills also orders pauses and resumes, so that a kill, a
/// pause and a resume of one sandbox never run at once.
/// </summary>
internal sealed partial class SandboxManager
{
    private readonly ConcurrentDictionary<string, SandboxRecord> _paused = new(StringComparer.Ordinal);


    // One resume per sandbox at a time: concurrent connects and proxied requests of an autoResume sandbox share it.
    private readonly ConcurrentDictionary<string, Lazy<Task<SandboxRecord>>> _resumes = new(StringComparer.Ordinal);

    /// <summary>Paused sandboxes now (a snapshot).</summary>
    public IReadOnlyCollection<SandboxRecord> Paused => [.. _paused.Values];

    public bool TryGetPaused(string sandboxId, out SandboxRecord record) => _paused.TryGetValue(sandboxId, out record!);

    /// <summary>How many paused sandboxes the team keeps now.</summary>
    public int PausedCountOf(string teamId) => _paused.Values.Count(r => r.TeamId == teamId);

    /// <summary>
    /// Pauses a running sandbox. <paramref name="memory"/>: keep its memory (true), only its filesystem (false), or
    /// whatever its tier keeps (null: memory where the tier can). Throws <see cref="SandboxPauseUnsupportedException"/>
    /// when the tier cannot (nothing changed), <see cref="TeamLimitException"/> past the team's paused quota,
    /// <see cref="SandboxStateConflictException"/> when it is paused already or being killed, and
    /// <see cref="UnknownSandboxException"/> when no running sandbox has this id.
    /// </summary>
    public async Task<SandboxRecord> PauseAsync(string sandboxId, bool? memory, TeamLimits teamLimits, string why, CancellationToken cancellationToken)
    {
        if (_paused.ContainsKey(sandboxId))
        {
            throw new SandboxStateConflictException($"sandbox '{sandboxId}' is already paused");
        }
        // A sandbox with volumes pauses like any other: its config.json names their directories, which stay mounted on
        // the host while it is paused (VolumeDisks), so the resume's run or restore binds them again; a volume's
        // delete counts paused users too (VolumeEndpoints).
        var record = GetRunning(sandboxId);
        var support = _tiers.PauseSupportOf(record.RuntimeName);
        var keepMemory = memory ?? support == PauseSupport.FilesystemAndMemory;
        if (support == PauseSupport.None || (keepMemory && support != PauseSupport.FilesystemAndMemory))
        {
            throw new SandboxPauseUnsupportedException(record.RuntimeName, keepMemory && support != PauseSupport.None);
        }
        var quota = teamLimits.MaxPausedSandboxes ?? _options.MaxPausedPerTeam;
        if (PausedCountOf(record.TeamId) >= quota)
        {
            throw new TeamLimitException("maxPausedSandboxes",
                $"team '{record.TeamId}' already keeps {quota} paused sandboxes, its limit (maxPausedSandboxes); kill or resume one, or raise the limit");
        }
        if (!_ending.TryAdd(sandboxId, "pausing"))
        {
            throw new SandboxStateConflictException($"sandbox '{sandboxId}' is being killed or paused");
        }
        try
        {
            // It stays in the live set (and so in GET /sandboxes/{id} as running) until the tier has paused it: a
            // request through the proxy meanwhile fails as the sandbox stops, and the ending slot keeps kills out.
            if (!_live.TryGetValue(sandboxId, out record!))
            {
                throw new UnknownSandboxException(sandboxId);
            }
            _scheduler.Cancel(sandboxId);
            var clock = Stopwatch.StartNew();
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                // A memory image is written at disk speed; two minutes bounds a wedged runsc, not a large sandbox's pause.
                timeout.CancelAfter(TimeSpan.FromMinutes(2));
                using var awake = _freezer is null ? default : await _freezer.HoldAwakeAsync(sandboxId, timeout.Token);
                await _runtime.PauseAsync(sandboxId, keepMemory, timeout.Token);
            }
            catch (Exception ex)
            {
                await AfterFailedPauseAsync(record, ex);
                throw;
            }
            var paused = record with { State = SandboxState.Paused, PausedAt = Now(), PausedWithMemory = keepMemory };
            await _store.UpdateAsync(paused, CancellationToken.None);
            _paused[sandboxId] = paused;
            _live.TryRemove(sandboxId, out _);
            EndLifetime(sandboxId);
            SandboxIncarnations.Renew(sandboxId);
            Interlocked.Decrement(ref _reserved);
            _teamUsage.Release(record.TeamId, record.CpuCount, record.MemoryMB);
            SandboxesLog.Paused(_logger, sandboxId, keepMemory, clock.ElapsedMilliseconds);
            await _journal.WriteAsync(sandboxId, SandboxLogLevel.Info,
                $"paused ({why}) in {clock.ElapsedMilliseconds} ms, {(keepMemory ? "memory and filesystem kept" : "filesystem kept, processes ended")}");
            return paused;
        }
        finally
        {
            _ending.TryRemove(sandboxId, out _);
        }
    }

    /// <summary>
    /// A pause that failed: the tier either left the sandbox running (back into the live set with its deadline) or
    /// lost it (ended, as a kill would).
    /// </summary>
    private async Task AfterFailedPauseAsync(SandboxRecord record, Exception error)
    {
        var id = record.SandboxId;
        SandboxesLog.PauseFailed(_logger, id, error);
        bool alive;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            alive = (await _runtime.ListAsync(timeout.Token)).Any(s => s.SandboxId == id);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or TimeoutException)
        {
            alive = false;
        }
        if (alive)
        {
            _scheduler.Schedule(id, record.EndAt);
            await _journal.WriteAsync(id, SandboxLogLevel.Warn, $"pause failed, it keeps running: {error.Message}");
            return;
        }
        _live.TryRemove(id, out _);
        EndLifetime(id);
        var reason = $"lost: its pause failed and it could not be kept ({error.Message})";
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await _runtime.DestroyAsync(id, timeout.Token);
        }
        catch (Exception ex)
        {
            SandboxesLog.DestroyFailed(_logger, id, ex);
        }
        Interlocked.Decrement(ref _reserved);
        _teamUsage.Release(record.TeamId, record.CpuCount, record.MemoryMB);
        await _journal.WriteAsync(id, SandboxLogLevel.Error, reason);
        await _store.UpdateAsync(record with { State = SandboxState.Killed, EndedAt = Now(), EndReason = reason }, CancellationToken.None);
    }

    /// <summary>
    /// E2B's connect of a paused sandbox: resumes it under the same id and tokens, with a deadline of
    /// <paramref name="timeoutSeconds"/> (the daemon's default when null) from now. Concurrent calls share one resume.
    /// Returns the running record and whether this call (or the one it joined) resumed it; a running sandbox is
    /// connected as before (its deadline only ever extended).
    /// </summary>
    public async Task<(SandboxRecord Record, bool Resumed)> ConnectOrResumeAsync(string sandboxId, int? timeoutSeconds, TeamLimits teamLimits, CancellationToken cancellationToken, bool keepMemory = true)
    {
        if (_live.ContainsKey(sandboxId))
        {
            return (await ConnectAsync(sandboxId, timeoutSeconds, cancellationToken), false);
        }
        if (!_paused.ContainsKey(sandboxId))
        {
            throw new UnknownSandboxException(sandboxId);
        }
        var resume = _resumes.GetOrAdd(sandboxId, id => new Lazy<Task<SandboxRecord>>(() => ResumeCoreAsync(id, timeoutSeconds, teamLimits, keepMemory)));
        try
        {
            // The resume itself is not cancelled with one caller: others may wait on it, and a half resume helps nobody.
            return (await resume.Value.WaitAsync(cancellationToken), true);
        }
        finally
        {
            if (resume.Value.IsCompleted)
            {
                _resumes.TryRemove(new KeyValuePair<string, Lazy<Task<SandboxRecord>>>(sandboxId, resume));
            }
        }
    }

    private async Task<SandboxRecord> ResumeCoreAsync(string sandboxId, int? timeoutSeconds, TeamLimits teamLimits, bool keepMemory)
    {
        await Task.Yield();
        if (!_paused.TryGetValue(sandboxId, out var paused))
        {
            // Resumed or killed by the call before this one.
            return _live.TryGetValue(sandboxId, out var running) ? running : throw new UnknownSandboxException(sandboxId);
        }
        if (!_ending.TryAdd(sandboxId, "resuming"))
        {
            throw new SandboxStateConflictException($"sandbox '{sandboxId}' is being killed");
        }
        try
        {
            _teamUsage.Reserve(paused.TeamId, teamLimits, paused.CpuCount, paused.MemoryMB);
            if (Interlocked.Increment(ref _reserved) > _options.MaxSandboxes)
            {
                Interlocked.Decrement(ref _reserved);
                _teamUsage.Release(paused.TeamId, paused.CpuCount, paused.MemoryMB);
                throw new SandboxCapacityException(_options.MaxSandboxes);
            }
            var clock = Stopwatch.StartNew();
            try
            {
                using var timeout = new CancellationTokenSource(_options.StartTimeout);
                await _runtime.ResumeAsync(sandboxId, keepMemory, timeout.Token);
            }
            catch (Exception ex)
            {
                Interlocked.Decrement(ref _reserved);
                _teamUsage.Release(paused.TeamId, paused.CpuCount, paused.MemoryMB);
                SandboxesLog.ResumeFailed(_logger, sandboxId, ex);
                await _journal.WriteAsync(sandboxId, SandboxLogLevel.Error, $"resume failed, it stays paused: {ex.Message}");
                throw new SandboxCreateException(sandboxId, $"sandbox '{sandboxId}' could not be resumed (it stays paused): {ex.Message}", ex);
            }
            var now = Now();
            var record = paused with
            {
                State = SandboxState.Running,
                EndAt = now.AddSeconds(timeoutSeconds ?? _options.DefaultTimeoutSeconds),
                PausedAt = null,
                PausedWithMemory = null,
            };
            await _store.UpdateAsync(record, CancellationToken.None);
            _paused.TryRemove(sandboxId, out _);
            SandboxIncarnations.Renew(sandboxId);
            _live[sandboxId] = record;
            _scheduler.Schedule(sandboxId, record.EndAt);
            var fromMemory = paused.PausedWithMemory == true && keepMemory;
            SandboxesLog.Resumed(_logger, sandboxId, fromMemory, clock.ElapsedMilliseconds);
            await _journal.WriteAsync(sandboxId, SandboxLogLevel.Info,
                $"resumed {(fromMemory ? "from its memory image" : paused.PausedWithMemory == true ? "by a fresh boot on its kept filesystem, its memory image dropped as asked" : "by a fresh boot on its kept filesystem")} in {clock.ElapsedMilliseconds} ms; it will be killed at {record.EndAt:O}");
            return record;
        }
        finally
        {
            _ending.TryRemove(sandboxId, out _);
        }
    }

    /// <summary>Kills a paused sandbox: its files and memory image go. False when no paused sandbox has this id (or someone else is ending it).</summary>
    private async Task<bool> KillPausedAsync(string sandboxId, string reason)
    {
        if (!_paused.ContainsKey(sandboxId) || !_ending.TryAdd(sandboxId, reason))
        {
            return false;
        }
        try
        {
            if (!_paused.TryRemove(sandboxId, out var record))
            {
                return false;
            }
            var endReason = reason;
            var level = SandboxLogLevel.Info;
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
            SandboxesLog.Killed(_logger, sandboxId, endReason);
            await _journal.WriteAsync(sandboxId, level, "killed while paused: " + endReason);
            await _store.UpdateAsync(record with { State = SandboxState.Killed, EndedAt = Now(), EndReason = endReason }, CancellationToken.None);
            return true;
        }
        finally
        {
            _ending.TryRemove(sandboxId, out _);
        }
    }

    /// <summary>Adds a sandbox found paused at start-up (recovery).</summary>
    internal void AdoptPaused(SandboxRecord record) => _paused.TryAdd(record.SandboxId, record);

    /// <summary>What the deadline does to a sandbox that asked for autoPause: a pause (memory as it asked, where its tier can), else a kill.</summary>
    private async Task ExpireWithPauseAsync(SandboxRecord record)
    {
        var support = _tiers.PauseSupportOf(record.RuntimeName);
        if (support != PauseSupport.None)
        {
            try
            {
                await PauseAsync(record.SandboxId, record.AutoPauseMemory && support == PauseSupport.FilesystemAndMemory,
                    TeamLimits.None, "its timeout passed and it asked for autoPause", CancellationToken.None);
                return;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                if (!_live.ContainsKey(record.SandboxId))
                {
                    return;
                }
                await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Warn, $"autoPause at the timeout failed ({ex.Message}); killed instead");
            }
        }
        await KillAsync(record.SandboxId, support == PauseSupport.None
            ? $"timed out (autoPause requested; the {record.RuntimeName} tier cannot pause)"
            : "timed out (autoPause failed)");
    }
}
