using System.Diagnostics;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Sandboxes;

/// <summary>One copy of a fork as the API reports it: the running copy's record, or why it did not start.</summary>
internal sealed record ForkOutcome(SandboxRecord? Sandbox, Exception? Error);

/// <summary>
/// Fork (issue 15, E2B's <c>POST /sandboxes/{id}/fork</c>). Each copy is a create for every quota (the team's share,
/// the host's capacity): copies that do not fit fail alone, as E2B reports each fork's outcome on its own. Each copy
/// is a new sandbox of the source's team, template, tier, size, metadata and lifecycle settings, with new access
/// tokens (the restored agent still holds the source's: the daemon replaces it with envd's <c>POST /init</c> before
/// anyone has the copy's id) and a deadline of the fork's timeout from the moment it runs.
/// </summary>
/// <remarks>
/// Crash safety: every copy's record is written (state starting) before the tier restores anything, and made running
/// only once its agent answers with its own token; a daemon killed in between leaves starting records, which recovery
/// ends and whose sandboxes it destroys (<see cref="SandboxRecovery"/>), and the tier's leftover sweep removes the
/// capture. So a fork leaves whole copies or none, and the source keeps running either way.
/// </remarks>
internal sealed partial class SandboxManager
{
    /// <summary>
    /// Forks a running sandbox into <paramref name="count"/> copies, each with a deadline of
    /// <paramref name="timeoutSeconds"/>. Throws <see cref="UnknownSandboxException"/> when no running sandbox has the
    /// id, <see cref="SandboxStateConflictException"/> when it is paused, being killed or paused, or mounts volumes,
    /// <see cref="SandboxForkUnsupportedException"/> when its tier cannot fork, and the capture's error when the
    /// capture failed (no copy was attempted then). Otherwise one outcome per copy, in order.
    /// </summary>
    public async Task<IReadOnlyList<ForkOutcome>> ForkAsync(string sourceId, int count, int timeoutSeconds, TeamLimits teamLimits, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        if (_paused.ContainsKey(sourceId))
        {
            throw new SandboxStateConflictException($"sandbox '{sourceId}' is paused; resume it (connect) before forking it");
        }
        var source = GetRunning(sourceId);
        if (_ending.TryGetValue(sourceId, out var ending))
        {
            throw new SandboxStateConflictException($"sandbox '{sourceId}' is {ending}");
        }
        if (_volumes?.MountsOf(sourceId).Count > 0)
        {
            throw new SandboxStateConflictException($"sandbox '{sourceId}' mounts volumes, and a sandbox with volumes cannot be forked (a volume is shared, not copied)");
        }
        if (!_tiers.CanFork(source.RuntimeName))
        {
            throw new SandboxForkUnsupportedException(source.RuntimeName);
        }

        var outcomes = new ForkOutcome[count];
        var reserved = new List<(int Index, SandboxRecord Record)>();
        for (var i = 0; i < count; i++)
        {
            try
            {
                _teamUsage.Reserve(source.TeamId, teamLimits, source.CpuCount, source.MemoryMB);
            }
            catch (TeamLimitException ex)
            {
                outcomes[i] = new ForkOutcome(null, ex);
                continue;
            }
            if (Interlocked.Increment(ref _reserved) > _options.MaxSandboxes)
            {
                Interlocked.Decrement(ref _reserved);
                _teamUsage.Release(source.TeamId, source.CpuCount, source.MemoryMB);
                outcomes[i] = new ForkOutcome(null, new SandboxCapacityException(_options.MaxSandboxes));
                continue;
            }
            var now = Now();
            var record = source with
            {
                SandboxId = SandboxIds.NewId(),
                State = SandboxState.Starting,
                StartedAt = now,
                EndAt = now.AddSeconds(timeoutSeconds),
                EndedAt = null,
                EndReason = null,
                PausedAt = null,
                PausedWithMemory = null,
                EnvdAccessToken = source.EnvdAccessToken is null ? null : SandboxIds.NewToken(),
                TrafficAccessToken = source.TrafficAccessToken is null ? null : SandboxIds.NewToken(),
            };
            try
            {
                await _store.InsertAsync(record, CancellationToken.None);
            }
            catch
            {
                Interlocked.Decrement(ref _reserved);
                _teamUsage.Release(source.TeamId, source.CpuCount, source.MemoryMB);
                foreach (var (_, r) in reserved)
                {
                    await EndForkCopyAsync(r, "failed to start: the fork could not record its copies", CancellationToken.None);
                }
                throw;
            }
            await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Info,
                $"forking from sandbox {sourceId} on the {record.RuntimeName} tier (copy {i + 1} of {count}), timeout {timeoutSeconds} s");
            reserved.Add((i, record));
        }
        if (reserved.Count == 0)
        {
            return outcomes;
        }

        var clock = Stopwatch.StartNew();
        IReadOnlyList<ForkedCopy> copies;
        try
        {
            // Not cancelled with the request: a fork half done helps nobody, and its copies' records must be settled.
            using var timeout = new CancellationTokenSource(_options.StartTimeout + TimeSpan.FromMinutes(2));
            using var awake = _freezer is null ? default : await _freezer.HoldAwakeAsync(sourceId, timeout.Token);
            copies = await _runtime.ForkAsync(sourceId, [.. reserved.Select(r => r.Record.SandboxId)], timeout.Token);
        }
        catch (Exception ex)
        {
            SandboxesLog.ForkFailed(_logger, sourceId, ex);
            foreach (var (_, r) in reserved)
            {
                await EndForkCopyAsync(r, $"failed to start: the fork's capture of sandbox {sourceId} failed ({ex.Message})", CancellationToken.None);
            }
            await _journal.WriteAsync(sourceId, SandboxLogLevel.Warn, $"a fork of it failed before any copy started: {ex.Message}; it keeps running");
            throw;
        }

        var byId = copies.ToDictionary(c => c.SandboxId, StringComparer.Ordinal);
        await Task.WhenAll(reserved.Select(async entry =>
        {
            var (index, record) = entry;
            var copy = byId.GetValueOrDefault(record.SandboxId);
            if (copy?.Sandbox is null)
            {
                var reason = copy?.Error ?? "the tier reported nothing of it";
                await EndForkCopyAsync(record, $"failed to start: {reason}", CancellationToken.None);
                outcomes[index] = new ForkOutcome(null, new SandboxCreateException(record.SandboxId, $"fork {record.SandboxId} could not be started: {reason}", null));
                return;
            }
            try
            {
                if (record.EnvdAccessToken is not null)
                {
                    // The restored agent holds the source's token: the copy's own replaces it before its id is handed out.
                    using var initTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                    await Pools.AgentInit.SendAsync(_runtime, record.SandboxId, source.EnvdAccessToken, new Dictionary<string, string>(), record.EnvdAccessToken, initTimeout.Token);
                }
                var startedAt = Now();
                var running = record with { State = SandboxState.Running, StartedAt = startedAt, EndAt = startedAt.AddSeconds(timeoutSeconds) };
                await _store.UpdateAsync(running, CancellationToken.None);
                _live[running.SandboxId] = running;
                _scheduler.Schedule(running.SandboxId, running.EndAt);
                await _journal.WriteAsync(running.SandboxId, SandboxLogLevel.Info,
                    $"forked from sandbox {sourceId}: running {clock.ElapsedMilliseconds} ms after the fork began{(copy.Sandbox.HostPid is { } pid ? $" (host pid {pid})" : "")}; it will be killed at {running.EndAt:O}");
                outcomes[index] = new ForkOutcome(running, null);
            }
            catch (Exception ex)
            {
                try
                {
                    using var destroyTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                    await _runtime.DestroyAsync(record.SandboxId, destroyTimeout.Token);
                }
                catch (Exception destroyError)
                {
                    SandboxesLog.DestroyFailed(_logger, record.SandboxId, destroyError);
                }
                await EndForkCopyAsync(record, $"failed to start: its access token could not be set ({ex.Message})", CancellationToken.None);
                outcomes[index] = new ForkOutcome(null, new SandboxCreateException(record.SandboxId, $"fork {record.SandboxId} could not be started: {ex.Message}", ex));
            }
        }));
        var started = outcomes.Count(o => o.Sandbox is not null);
        SandboxesLog.Forked(_logger, sourceId, count, started, clock.ElapsedMilliseconds);
        await _journal.WriteAsync(sourceId, SandboxLogLevel.Info, $"forked into {started} of {count} copies in {clock.ElapsedMilliseconds} ms; it keeps running");
        return outcomes;
    }

    /// <summary>A copy that will not run: its record ends, its share of the quotas goes back.</summary>
    private async Task EndForkCopyAsync(SandboxRecord record, string reason, CancellationToken cancellationToken)
    {
        Interlocked.Decrement(ref _reserved);
        _teamUsage.Release(record.TeamId, record.CpuCount, record.MemoryMB);
        await _store.UpdateAsync(record with { State = SandboxState.Killed, EndedAt = Now(), EndReason = reason }, cancellationToken);
        await _journal.WriteAsync(record.SandboxId, SandboxLogLevel.Error, reason);
    }
}
