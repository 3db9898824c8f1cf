namespace Paddock.Daemon.Pools;

/// <summary>Log events of the warm pools (ids 3300-3399).</summary>
internal static partial class PoolsLog
{
    [LoggerMessage(3300, LogLevel.Debug, "Pool {Pool}: sandbox {SandboxId} ready in {Milliseconds} ms ({Ready} ready)")]
    public static partial void MemberReady(ILogger logger, string pool, string sandboxId, long milliseconds, int ready);

    [LoggerMessage(3301, LogLevel.Warning, "Pool {Pool}: a pool sandbox failed to start; next try in {DelayMs} ms")]
    public static partial void MemberStartFailed(ILogger logger, string pool, long delayMs, Exception exception);

    [LoggerMessage(3302, LogLevel.Debug, "Pool {Pool}: sandbox {SandboxId} claimed")]
    public static partial void Claimed(ILogger logger, string pool, string sandboxId);

    [LoggerMessage(3303, LogLevel.Warning, "Pool {Pool}: handing sandbox {SandboxId} over failed; it is destroyed and the create goes on without it")]
    public static partial void HandOverFailed(ILogger logger, string pool, string sandboxId, Exception exception);

    [LoggerMessage(3304, LogLevel.Warning, "Pool sandbox {SandboxId} could not be destroyed; the next daemon start removes it")]
    public static partial void DestroyFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(3305, LogLevel.Information, "Warm pools: {Pools}; {Concurrency} starts at once")]
    public static partial void Configured(ILogger logger, string pools, int concurrency);

    [LoggerMessage(3306, LogLevel.Information, "Warm pools stopped: {Count} pool sandboxes destroyed")]
    public static partial void Stopped(ILogger logger, int count);

    [LoggerMessage(3307, LogLevel.Debug, "Pool {Pool}: sandbox {SandboxId} is of an older build of its template; destroyed")]
    public static partial void Stale(ILogger logger, string pool, string sandboxId);
}
