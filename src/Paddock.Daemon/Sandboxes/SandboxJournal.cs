using Paddock.Daemon.Store;

namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// A sandbox's own log (GET /sandboxes/{id}/logs): what the daemon did to it and saw of it, kept in the store with
/// the newest <see cref="DaemonOptions.LogLinesPerSandbox"/> lines. Lines never hold environment values or tokens.
/// </summary>
internal sealed class SandboxJournal(ISandboxStore store, TimeProvider time, DaemonOptions options, ILogger<SandboxJournal> logger)
{
    /// <summary>Appends a line; a store failure is logged, not thrown, since no lifecycle step should fail over its log.</summary>
    public async Task WriteAsync(string sandboxId, SandboxLogLevel level, string message)
    {
        try
        {
            await store.AppendLogAsync(sandboxId, time.GetUtcNow(), level, message, options.LogLinesPerSandbox, CancellationToken.None);
        }
        catch (Exception ex)
        {
            SandboxesLog.JournalFailed(logger, sandboxId, ex);
        }
    }
}
