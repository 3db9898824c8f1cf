namespace Paddock.Daemon.Dashboard;

internal static partial class DashboardLog
{
    [LoggerMessage(EventId = 2100, Level = LogLevel.Information, Message = "Dashboard sign-in for team {TeamId} with key {KeyMask}")]
    public static partial void SignedIn(ILogger logger, string teamId, string keyMask);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Information, Message = "Sandbox {SandboxId} killed from the dashboard by team {TeamId}")]
    public static partial void Killed(ILogger logger, string sandboxId, string teamId);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Information, Message = "Dashboard terminal {Pid} opened in sandbox {SandboxId}")]
    public static partial void TerminalOpened(ILogger logger, string sandboxId, int pid);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Information, Message = "Dashboard terminal {Pid} in sandbox {SandboxId} closed: {How}")]
    public static partial void TerminalClosed(ILogger logger, string sandboxId, int pid, string how);
}
