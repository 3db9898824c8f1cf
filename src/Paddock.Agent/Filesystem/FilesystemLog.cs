namespace Paddock.Agent.Filesystem;

/// <summary>Log messages of the filesystem service (event ids 2000-2099).</summary>
internal static partial class FilesystemLog
{
    [LoggerMessage(EventId = 2000, Level = LogLevel.Debug, Message = "Watcher {Id} created for {Path}")]
    public static partial void WatcherCreated(ILogger logger, string id, string path);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Debug, Message = "Watcher {Id} removed")]
    public static partial void WatcherRemoved(ILogger logger, string id);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Watcher {Id} removed after {IdleTimeout} without a poll")]
    public static partial void WatcherExpired(ILogger logger, string id, TimeSpan idleTimeout);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Debug, Message = "Watch of {Path} ended: {Reason}")]
    public static partial void WatchEnded(ILogger logger, string path, string reason);
}
