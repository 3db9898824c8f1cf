using Paddock.Envd.Connect;

namespace Paddock.Client.Envd;

/// <summary>Maps envd's Connect errors and HTTP statuses to the SDK's exceptions (as E2B's SDK maps them).</summary>
internal static class EnvdErrors
{
    public static Exception From(ConnectException error, string sandboxId, string what)
    {
        var status = error.Data["HttpStatus"] as int?;
        // A proxy answers 502 for a sandbox it does not know or cannot reach (E2B's and paddockd's); envd never does.
        if (status is 502 or 503)
        {
            return new SandboxNotFoundException(sandboxId, $"sandbox {sandboxId} is not running or cannot be reached ({what}: {error.Message})", error) { StatusCode = status };
        }
        return error.Code switch
        {
            ConnectCode.NotFound => new NotFoundException($"{what}: {error.Message}", error),
            ConnectCode.Unauthenticated or ConnectCode.PermissionDenied => new AuthenticationException($"{what}: {error.Message}", error),
            ConnectCode.InvalidArgument => new InvalidArgumentException($"{what}: {error.Message}", error),
            ConnectCode.DeadlineExceeded => new SandboxTimeoutException($"{what}: {error.Message} (the call ran past its time limit; pass a longer timeout, or none)", error),
            ConnectCode.Unavailable => new SandboxNotFoundException(sandboxId, $"sandbox {sandboxId} is probably not running anymore ({what}: {error.Message})", error),
            _ => new SandboxException($"{what} failed ({error.Code.ToWire()}): {error.Message}", error),
        };
    }

    /// <summary>The error of a plain HTTP envd call (<c>/files</c>).</summary>
    public static Exception FromHttp(int status, string message, string sandboxId, string what) => status switch
    {
        400 => new InvalidArgumentException($"{what}: {message}") { StatusCode = status },
        401 or 403 => new AuthenticationException($"{what}: {message}") { StatusCode = status },
        404 => new NotFoundException($"{what}: {message}") { StatusCode = status },
        502 or 503 => new SandboxNotFoundException(sandboxId, $"sandbox {sandboxId} is not running or cannot be reached ({what}: {message})") { StatusCode = status },
        507 => new SandboxException($"{what}: not enough disk space in the sandbox: {message}") { StatusCode = status },
        _ => new SandboxException($"{what} failed ({status}): {message}") { StatusCode = status },
    };
}
