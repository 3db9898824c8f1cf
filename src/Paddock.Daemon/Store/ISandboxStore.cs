namespace Paddock.Daemon.Store;

/// <summary>
/// The daemon's durable state about sandboxes. Kept small and free of SQL so that a PostgreSQL implementation (Npgsql)
/// can sit beside the SQLite one. Implementations are safe for concurrent use.
/// </summary>
internal interface ISandboxStore
{
    /// <summary>Creates or migrates the schema to the newest version. Called once before anything else.</summary>
    Task InitializeAsync(CancellationToken cancellationToken);

    /// <summary>Adds a new record; throws <see cref="InvalidOperationException"/> if the id is taken.</summary>
    Task InsertAsync(SandboxRecord record, CancellationToken cancellationToken);

    /// <summary>Replaces the mutable part of a record (state, deadline, end) as a whole.</summary>
    Task UpdateAsync(SandboxRecord record, CancellationToken cancellationToken);

    /// <summary>
    /// Moves the deadline of a running sandbox, and only of a running one: a deadline change that loses a race with a
    /// kill must not bring the killed record back to life.
    /// </summary>
    Task SetDeadlineAsync(string sandboxId, DateTimeOffset endAt, CancellationToken cancellationToken);

    Task<SandboxRecord?> GetAsync(string sandboxId, CancellationToken cancellationToken);

    /// <summary>Records in any of <paramref name="states"/>, newest first.</summary>
    Task<IReadOnlyList<SandboxRecord>> ListAsync(IReadOnlyCollection<SandboxState> states, CancellationToken cancellationToken);

    /// <summary>Appends a line to a sandbox's log, dropping its oldest lines beyond <paramref name="keepLast"/>.</summary>
    Task AppendLogAsync(string sandboxId, DateTimeOffset timestamp, SandboxLogLevel level, string message, int keepLast, CancellationToken cancellationToken);

    /// <summary>Up to <paramref name="limit"/> lines at or after <paramref name="from"/>, oldest first (or newest first when <paramref name="backward"/>).</summary>
    Task<IReadOnlyList<SandboxLogLine>> GetLogsAsync(string sandboxId, DateTimeOffset? from, int limit, bool backward, CancellationToken cancellationToken);

    /// <summary>Deletes killed records (and their logs) that ended before <paramref name="endedBefore"/>; returns how many.</summary>
    Task<int> PurgeAsync(DateTimeOffset endedBefore, CancellationToken cancellationToken);
}

/// <summary>API keys, kept only as SHA-256 hashes.</summary>
internal interface IApiKeyStore
{
    Task AddApiKeyAsync(string keyHash, string keyMask, DateTimeOffset createdAt, CancellationToken cancellationToken);

    Task<IReadOnlyList<string>> ListApiKeyHashesAsync(CancellationToken cancellationToken);
}
