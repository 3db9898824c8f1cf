namespace Paddock.Daemon.Sandboxes;

/// <summary>The idle freezer's log events (<see cref="IdleFreezer"/>); per-sandbox ones at Debug, as they come with every idle period.</summary>
internal static partial class FreezerLog
{
    [LoggerMessage(EventId = 330, Level = LogLevel.Debug, Message = "Sandbox {SandboxId} frozen (idle, only its agent running) in {ElapsedMs:0.0} ms")]
    public static partial void Frozen(ILogger logger, string sandboxId, double elapsedMs);

    [LoggerMessage(EventId = 331, Level = LogLevel.Debug, Message = "Sandbox {SandboxId} thawed in {ElapsedMs:0.0} ms")]
    public static partial void Thawed(ILogger logger, string sandboxId, double elapsedMs);

    [LoggerMessage(EventId = 332, Level = LogLevel.Information, Message = "Idle freezer: froze {Froze} sandboxes; {Frozen} of {Live} live sandboxes are frozen")]
    public static partial void Swept(ILogger logger, int froze, int frozen, int live);

    [LoggerMessage(EventId = 333, Level = LogLevel.Warning, Message = "Sandbox {SandboxId} stayed FREEZING past the bound and was thawed again; it is retried at a later sweep")]
    public static partial void FreezeGaveUp(ILogger logger, string sandboxId);

    [LoggerMessage(EventId = 334, Level = LogLevel.Warning, Message = "Sandbox {SandboxId} could not be frozen")]
    public static partial void FreezeFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(EventId = 335, Level = LogLevel.Warning, Message = "Sandbox {SandboxId} could not be thawed")]
    public static partial void ThawFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(EventId = 336, Level = LogLevel.Error, Message = "Idle freezer sweep failed")]
    public static partial void SweepFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 337, Level = LogLevel.Information, Message = "Stopping: thawed the {Count} sandboxes the idle freezer held frozen")]
    public static partial void ThawedAtStop(ILogger logger, int count);
}
