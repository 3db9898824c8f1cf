namespace Paddock.Daemon.Audit;

/// <summary>
/// Where the audit trail is kept (schema step 5): <see cref="AuditStore"/>, on either database,
/// with the same bound per sandbox (the first half and the newest half kept, the events between counted as dropped).
/// </summary>
internal interface IAuditStore
{
    /// <summary>Writes a batch in one transaction and applies the bound to every sandbox it touched; returns the events dropped by the bound.</summary>
    Task<long> AppendAsync(IReadOnlyList<PendingAuditEvent> batch, IReadOnlyDictionary<string, long> lostBefore, int maxPerSandbox, CancellationToken cancellationToken);

    /// <summary>Events of one sandbox with seq above <paramref name="after"/> and time in [from, to], oldest first, at most <paramref name="limit"/>.</summary>
    Task<AuditTrailRead> ReadAsync(string sandboxId, long after, DateTimeOffset? from, DateTimeOffset? to, int limit, CancellationToken cancellationToken);

    /// <summary>How many events of the sandbox the store holds (tests and the bound's check).</summary>
    Task<long> CountAsync(string sandboxId, CancellationToken cancellationToken);

    /// <summary>Deletes events older than <paramref name="before"/>, and the bookkeeping of trails with nothing newer; returns the events deleted.</summary>
    Task<int> PurgeAsync(DateTimeOffset before, CancellationToken cancellationToken);
}
