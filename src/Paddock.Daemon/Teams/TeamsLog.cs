namespace Paddock.Daemon.Teams;

internal static partial class TeamsLog
{
    [LoggerMessage(EventId = 700, Level = LogLevel.Information, Message = "Created team {TeamId} ({Name})")]
    public static partial void TeamCreated(ILogger logger, string teamId, string name);

    [LoggerMessage(EventId = 701, Level = LogLevel.Information, Message = "Changed team {TeamId}: name {Name}, limits {Limits}")]
    public static partial void TeamChanged(ILogger logger, string teamId, string name, string limits);

    [LoggerMessage(EventId = 702, Level = LogLevel.Information, Message = "Created API key {KeyId} ({KeyMask}) for team {TeamId}")]
    public static partial void KeyCreated(ILogger logger, string keyId, string keyMask, string teamId);

    [LoggerMessage(EventId = 703, Level = LogLevel.Information, Message = "Revoked API key {KeyId} of team {TeamId}")]
    public static partial void KeyRevoked(ILogger logger, string keyId, string teamId);

    [LoggerMessage(EventId = 704, Level = LogLevel.Warning, Message = "Could not record the last use of API key {KeyId}")]
    public static partial void LastUsedFailed(ILogger logger, string keyId, Exception exception);
}
