using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// Run once at start, before the API serves: makes the store and the host agree. A sandbox both remember is re-adopted
/// (deadline re-armed; killed at once if it passed while the daemon was down); one only the store remembers is marked
/// lost; one only the runtime has is destroyed. Each outcome is written to the sandbox's record and log.
/// </summary>
internal sealed class SandboxRecovery(
    ISandboxStore store,
    ISandboxRuntime runtime,
    IIsolationTiers tiers,
    SandboxManager manager,
    SandboxJournal journal,
    TimeProvider time,
    DaemonOptions options,
    ILogger<SandboxRecovery> logger)
{
    public sealed record Outcome(int Adopted, int Lost, int Expired, int Strays);

    public async Task<Outcome> RunAsync(CancellationToken cancellationToken)
    {
        await store.PurgeAsync(time.GetUtcNow() - options.RecordRetention, cancellationToken);

        var alive = (await runtime.ListAsync(cancellationToken)).ToDictionary(s => s.SandboxId, StringComparer.Ordinal);
        var paused = (await runtime.ListPausedAsync(cancellationToken)).ToDictionary(s => s.SandboxId, StringComparer.Ordinal);
        var records = await store.ListAsync([SandboxState.Starting, SandboxState.Running, SandboxState.Paused], cancellationToken);
        if (options.Cluster is { } cluster)
        {
            // Cluster mode: the store holds every node's sandboxes, and only this node's are this host's to reconcile
            // (another node's would all look lost from here).
            records = [.. records.Where(r => r.NodeId == cluster.NodeId)];
        }
        int adopted = 0, lost = 0, expired = 0, strays = 0;

        foreach (var record in records)
        {
            var now = time.GetUtcNow();
            if (tiers.UnavailableReason(record.RuntimeName) is { } unavailable)
            {
                await EndAsync(record, $"lost: it ran on the {record.RuntimeName} tier, which this daemon cannot run now ({unavailable})", now);
                lost++;
                continue;
            }
            if (paused.Remove(record.SandboxId, out var onDisk) && record.State != SandboxState.Starting)
            {
                // Paused on the host: whether the store heard of it (a daemon killed after the tier's pause but before
                // its record changed leaves it saying running) the host decides, since the pause was complete.
                var kept = record.State == SandboxState.Paused ? record
                    : record with { State = SandboxState.Paused, PausedAt = onDisk.PausedAt, PausedWithMemory = onDisk.HasMemory };
                if (kept != record)
                {
                    await store.UpdateAsync(kept, CancellationToken.None);
                }
                manager.AdoptPaused(kept);
                await journal.WriteAsync(record.SandboxId, SandboxLogLevel.Info, "paused; kept across a daemon restart");
                adopted++;
                continue;
            }
            if (record.State == SandboxState.Paused && alive.ContainsKey(record.SandboxId))
            {
                // Its resume finished on the host, the record did not hear of it: running, with a fresh deadline.
                var resumed = record with
                {
                    State = SandboxState.Running,
                    EndAt = now.AddSeconds(options.DefaultTimeoutSeconds),
                    PausedAt = null,
                    PausedWithMemory = null,
                };
                alive.Remove(record.SandboxId);
                await store.UpdateAsync(resumed, CancellationToken.None);
                manager.Adopt(resumed);
                await journal.WriteAsync(record.SandboxId, SandboxLogLevel.Info, $"resumed just before a daemon restart; re-adopted, it will be killed at {resumed.EndAt:O}");
                adopted++;
                continue;
            }
            if (!alive.Remove(record.SandboxId))
            {
                SandboxesLog.Lost(logger, record.SandboxId, StateStore.StateName(record.State));
                await EndAsync(record, record.State == SandboxState.Starting
                    ? "lost: the daemon stopped while it was starting and the runtime does not have it"
                    : record.State == SandboxState.Paused ? "lost: its paused state was no longer on the host when the daemon restarted"
                    : "lost: the runtime no longer had it when the daemon restarted", now);
                lost++;
                continue;
            }
            if (record.State == SandboxState.Starting)
            {
                // Its create never returned to a client, so nobody has its id: adopting it would only leak it.
                await DestroyAsync(record.SandboxId);
                await EndAsync(record, "killed: the daemon stopped while it was starting; destroyed on restart", now);
                lost++;
                continue;
            }
            // The previous daemon's idle freezer may have left it frozen (it thaws at a clean stop, not at a crash),
            // and what it knew is gone with it: thawed before anything is sent to it; the new freezer starts afresh.
            await runtime.SetFrozenAsync(record.SandboxId, frozen: false, cancellationToken);
            manager.Adopt(record);
            if (record.EndAt <= now)
            {
                await journal.WriteAsync(record.SandboxId, SandboxLogLevel.Info, "re-adopted after a daemon restart, but its deadline passed while the daemon was down");
                await manager.KillAsync(record.SandboxId, "timed out while the daemon was down");
                expired++;
                continue;
            }
            SandboxesLog.Readopted(logger, record.SandboxId, record.EndAt);
            await journal.WriteAsync(record.SandboxId, SandboxLogLevel.Info, $"re-adopted after a daemon restart; it will be killed at {record.EndAt:O}");
            adopted++;
        }

        foreach (var stray in alive.Values)
        {
            await DestroyAsync(stray.SandboxId);
            SandboxesLog.StrayDestroyed(logger, stray.SandboxId, stray.Tier ?? runtime.Name);
            if (await store.GetAsync(stray.SandboxId, cancellationToken) is not null)
            {
                await journal.WriteAsync(stray.SandboxId, SandboxLogLevel.Warn, "found still running on the host after it had ended; destroyed on daemon restart");
            }
            strays++;
        }

        foreach (var stray in paused.Values)
        {
            // Paused on the host, but its record ended or never was: nobody can resume it.
            await DestroyAsync(stray.SandboxId);
            SandboxesLog.StrayDestroyed(logger, stray.SandboxId, stray.Tier ?? runtime.Name);
            strays++;
        }

        // What crashed sandboxes left behind (mounts, network namespaces, cgroups, directories) goes too.
        foreach (var leftover in await runtime.CleanupLeftoversAsync(cancellationToken))
        {
            SandboxesLog.LeftoverRemoved(logger, leftover);
        }
        SandboxesLog.RecoveryDone(logger, adopted, lost, expired, strays);
        return new Outcome(adopted, lost, expired, strays);
    }

    private async Task EndAsync(SandboxRecord record, string reason, DateTimeOffset now)
    {
        await store.UpdateAsync(record with { State = SandboxState.Killed, EndedAt = now, EndReason = reason }, CancellationToken.None);
        await journal.WriteAsync(record.SandboxId, SandboxLogLevel.Warn, reason);
    }

    private async Task DestroyAsync(string sandboxId)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await runtime.DestroyAsync(sandboxId, timeout.Token);
        }
        catch (Exception ex)
        {
            SandboxesLog.StrayDestroyFailed(logger, sandboxId, ex);
        }
    }
}
