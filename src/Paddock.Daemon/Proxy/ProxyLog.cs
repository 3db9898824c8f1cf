namespace Paddock.Daemon.Proxy;

internal static partial class ProxyLog
{
    [LoggerMessage(EventId = 400, Level = LogLevel.Debug, Message = "No running sandbox {SandboxId} for {Method} {Path}")]
    public static partial void UnknownSandbox(ILogger logger, string sandboxId, string method, string path);

    [LoggerMessage(EventId = 401, Level = LogLevel.Information, Message = "Forwarding {Method} {Path} to sandbox {SandboxId} port {Port} failed: {Error}")]
    public static partial void ForwardFailed(ILogger logger, string method, string path, string sandboxId, int port, string error, Exception? exception);

    [LoggerMessage(EventId = 402, Level = LogLevel.Information, Message = "Refused {Method} {Path} to sandbox {SandboxId} port {Port}: missing or wrong traffic access token")]
    public static partial void TrafficTokenRefused(ILogger logger, string method, string path, string sandboxId, int port);

    [LoggerMessage(EventId = 403, Level = LogLevel.Debug, Message = "Sandbox {SandboxId} is paused: {Method} {Path} answered 502")]
    public static partial void PausedSandbox(ILogger logger, string sandboxId, string method, string path);

    [LoggerMessage(EventId = 404, Level = LogLevel.Warning, Message = "Sandbox {SandboxId}: autoResume on a proxied request failed")]
    public static partial void AutoResumeFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(EventId = 405, Level = LogLevel.Information, Message = "Sandbox {SandboxId} ended under {Method} {Path}: the forwarded exchange was cut ({Error})")]
    public static partial void SandboxEndedUnderRequest(ILogger logger, string sandboxId, string method, string path, string error);
}
