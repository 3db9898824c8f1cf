namespace Paddock.Agent.Init;

/// <summary>Log messages of <c>POST /init</c> (event ids 2200-2299).</summary>
internal static partial class InitLog
{
    [LoggerMessage(EventId = 2200, Level = LogLevel.Information, Message = "Initialized: {Variables} sandbox variables set, access token {TokenChange}, default user {DefaultUser}")]
    public static partial void Initialized(ILogger logger, int variables, string tokenChange, string defaultUser);

    [LoggerMessage(EventId = 2201, Level = LogLevel.Debug, Message = "POST /init refused: {Reason}")]
    public static partial void Refused(ILogger logger, string reason);
}
