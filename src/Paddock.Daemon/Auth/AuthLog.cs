namespace Paddock.Daemon.Auth;

internal static partial class AuthLog
{
    [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "Created the first API key {KeyMask}, written to {Path}")]
    public static partial void FirstKeyCreated(ILogger logger, string keyMask, string path);

    [LoggerMessage(EventId = 201, Level = LogLevel.Information, Message = "Refused {Method} {Path} from {Remote}: {Reason}")]
    public static partial void Refused(ILogger logger, string method, string path, string? remote, string reason);
}
