using Microsoft.Extensions.Logging;

namespace Paddock.Interpreter;

/// <summary>The server's log events (stable ids 1-99).</summary>
internal static partial class InterpreterLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "kernel {Pid}: {Problem}")]
    public static partial void KernelProblem(ILogger logger, int pid, string problem);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "kernel {Pid} exited: {How}")]
    public static partial void KernelExited(ILogger logger, int pid, string how);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "context {ContextId} ({Language}, {Cwd}): kernel {Pid} ready in {Milliseconds:0} ms")]
    public static partial void KernelReady(ILogger logger, string contextId, string language, string cwd, int pid, double milliseconds);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "context {ContextId}: the client left mid-cell; kernel interrupted ({Outcome})")]
    public static partial void Interrupted(ILogger logger, string contextId, string outcome);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "context {ContextId}: kernel restarted ({Reason})")]
    public static partial void Restarted(ILogger logger, string contextId, string reason);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "kernel {Pid}: {Processes} processes ({Tasks} threads) in its session, over the limit (available memory {AvailableMiB} MiB when under the floor): the session is killed")]
    public static partial void ProcessLimitExceeded(ILogger logger, int pid, int processes, int tasks, long? availableMiB);

    [LoggerMessage(EventId = 6, Level = LogLevel.Error, Message = "the default python context could not start")]
    public static partial void DefaultContextFailed(ILogger logger, Exception exception);
}
