namespace Paddock.Agent.Processes;

/// <summary>Log messages of the process service (event ids 2000-2099).</summary>
internal static partial class ProcessLog
{
    [LoggerMessage(2000, LogLevel.Information, "Started process {Pid} ({Command}) as {User}")]
    public static partial void Started(ILogger logger, int pid, string command, string user);

    [LoggerMessage(2001, LogLevel.Information, "Process {Pid} ended: {Status}")]
    public static partial void Ended(ILogger logger, int pid, string status);

    [LoggerMessage(2002, LogLevel.Debug, "Reaped orphan {Pid}: {Status}")]
    public static partial void OrphanReaped(ILogger logger, int pid, string status);

    [LoggerMessage(2003, LogLevel.Warning, "Cannot become a child subreaper ({Reason}): orphans of commands will be reaped by the host's init instead")]
    public static partial void SubreaperFailed(ILogger logger, string reason);

    [LoggerMessage(2004, LogLevel.Error, "The child reaper failed; it goes on")]
    public static partial void ReaperFailed(ILogger logger, Exception exception);

    [LoggerMessage(2005, LogLevel.Error, "waitpid failed: {Reason}")]
    public static partial void WaitFailed(ILogger logger, string reason);

    [LoggerMessage(2006, LogLevel.Information, "The start call's deadline passed: killing process group {Pid}")]
    public static partial void DeadlineKill(ILogger logger, int pid);

    [LoggerMessage(2007, LogLevel.Debug, "Output pump {Kind} of process {Pid} ended: {Reason}")]
    public static partial void PumpEnded(ILogger logger, int pid, string kind, string reason);

    [LoggerMessage(2008, LogLevel.Information, "Stopping: sending signal {Signal} to {Count} process groups (PID 1: {IsInit})")]
    public static partial void Forwarding(ILogger logger, int signal, int count, bool isInit);

    [LoggerMessage(2009, LogLevel.Warning, "The runtime's SIGCHLD hook is unavailable; as PID 1 ({IsInit}) the runtime will reap children and their exit statuses are lost")]
    public static partial void RuntimeSigChldUnavailable(ILogger logger, bool isInit);

    [LoggerMessage(2010, LogLevel.Error, "Output pump {Kind} of process {Pid} failed")]
    public static partial void PumpFailed(ILogger logger, int pid, string kind, Exception exception);

    [LoggerMessage(2011, LogLevel.Error, "Waiting for process output failed: {Reason}; retrying")]
    public static partial void PollFailed(ILogger logger, string reason);

    [LoggerMessage(2012, LogLevel.Debug, "A stream stopped receiving the output of process {Pid}: {Reason}")]
    public static partial void SubscriberDetached(ILogger logger, int pid, string reason);
}
