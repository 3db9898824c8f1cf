namespace Paddock.Daemon.Store;

internal static partial class StoreLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "State database {Path} at schema version {Version}")]
    public static partial void Opened(ILogger logger, string path, int version);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "Applied schema migration {Version}")]
    public static partial void Migrated(ILogger logger, int version);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information, Message = "Purged {Count} sandbox records that ended before {Cutoff}")]
    public static partial void Purged(ILogger logger, int count, DateTimeOffset cutoff);
}
