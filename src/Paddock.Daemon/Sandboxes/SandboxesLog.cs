namespace Paddock.Daemon.Sandboxes;

internal static partial class SandboxesLog
{
    [LoggerMessage(EventId = 300, Level = LogLevel.Information, Message = "Sandbox {SandboxId} started from template {Template} by {Runtime} in {ElapsedMs} ms, deadline {EndAt}")]
    public static partial void Started(ILogger logger, string sandboxId, string template, string runtime, long elapsedMs, DateTimeOffset endAt);

    [LoggerMessage(EventId = 301, Level = LogLevel.Warning, Message = "Sandbox {SandboxId} failed to start from template {Template}")]
    public static partial void StartFailed(ILogger logger, string sandboxId, string template, Exception exception);

    [LoggerMessage(EventId = 302, Level = LogLevel.Information, Message = "Sandbox {SandboxId} killed: {Reason}")]
    public static partial void Killed(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(EventId = 303, Level = LogLevel.Error, Message = "Destroying sandbox {SandboxId} failed; it may be left on the host until the next start reconciles it")]
    public static partial void DestroyFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(EventId = 308, Level = LogLevel.Warning, Message = "Killing the processes of sandbox {SandboxId} failed; destroying it instead")]
    public static partial void KillProcessesFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(EventId = 304, Level = LogLevel.Information, Message = "Sandbox {SandboxId} deadline moved to {EndAt}")]
    public static partial void DeadlineMoved(ILogger logger, string sandboxId, DateTimeOffset endAt);

    [LoggerMessage(EventId = 305, Level = LogLevel.Error, Message = "Expiring sandbox {SandboxId} failed")]
    public static partial void ExpiryFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(EventId = 306, Level = LogLevel.Warning, Message = "Writing the log of sandbox {SandboxId} failed")]
    public static partial void JournalFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(EventId = 307, Level = LogLevel.Warning, Message = "Periodic housekeeping failed")]
    public static partial void HousekeepingFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 310, Level = LogLevel.Information, Message = "Recovery: re-adopted sandbox {SandboxId}, deadline {EndAt}")]
    public static partial void Readopted(ILogger logger, string sandboxId, DateTimeOffset endAt);

    [LoggerMessage(EventId = 311, Level = LogLevel.Warning, Message = "Recovery: sandbox {SandboxId} was recorded as {State} but the runtime no longer has it; marked lost")]
    public static partial void Lost(ILogger logger, string sandboxId, string state);

    [LoggerMessage(EventId = 312, Level = LogLevel.Warning, Message = "Recovery: destroyed sandbox {SandboxId} found in runtime {Runtime} with no live record")]
    public static partial void StrayDestroyed(ILogger logger, string sandboxId, string runtime);

    [LoggerMessage(EventId = 313, Level = LogLevel.Error, Message = "Recovery: destroying stray sandbox {SandboxId} failed")]
    public static partial void StrayDestroyFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(EventId = 315, Level = LogLevel.Information, Message = "Recovery: removed what sandbox {SandboxId} left on the host")]
    public static partial void LeftoverRemoved(ILogger logger, string sandboxId);

    [LoggerMessage(EventId = 314, Level = LogLevel.Information, Message = "Recovery done: {Adopted} re-adopted, {Lost} lost, {Expired} expired while down, {Strays} strays destroyed")]
    public static partial void RecoveryDone(ILogger logger, int adopted, int lost, int expired, int strays);

    [LoggerMessage(EventId = 320, Level = LogLevel.Debug, Message = "Sandbox {SandboxId} created ({Path}): {Steps}")]
    public static partial void CreateSteps(ILogger logger, string sandboxId, string path, string steps);

    [LoggerMessage(EventId = 321, Level = LogLevel.Information, Message = "Stopping: waiting for the teardowns of {Count} killed sandboxes")]
    public static partial void WaitingForTeardowns(ILogger logger, int count);

    [LoggerMessage(EventId = 322, Level = LogLevel.Debug, Message = "Sampling the metrics of sandbox {SandboxId} failed: {Error}")]
    public static partial void MetricsSampleFailed(ILogger logger, string sandboxId, string error);

    [LoggerMessage(EventId = 330, Level = LogLevel.Information, Message = "Sandbox {SandboxId} paused (memory kept: {Memory}) in {Milliseconds} ms")]
    public static partial void Paused(ILogger logger, string sandboxId, bool memory, long milliseconds);

    [LoggerMessage(EventId = 331, Level = LogLevel.Warning, Message = "Sandbox {SandboxId}: pause failed")]
    public static partial void PauseFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(EventId = 332, Level = LogLevel.Information, Message = "Sandbox {SandboxId} resumed (from memory: {Memory}) in {Milliseconds} ms")]
    public static partial void Resumed(ILogger logger, string sandboxId, bool memory, long milliseconds);

    [LoggerMessage(EventId = 333, Level = LogLevel.Warning, Message = "Sandbox {SandboxId}: resume failed; it stays paused")]
    public static partial void ResumeFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(EventId = 340, Level = LogLevel.Information, Message = "Sandbox {SandboxId} forked: {Started} of {Count} copies running after {Milliseconds} ms")]
    public static partial void Forked(ILogger logger, string sandboxId, int count, int started, long milliseconds);

    [LoggerMessage(EventId = 341, Level = LogLevel.Warning, Message = "Sandbox {SandboxId}: fork failed before any copy started")]
    public static partial void ForkFailed(ILogger logger, string sandboxId, Exception exception);
}
