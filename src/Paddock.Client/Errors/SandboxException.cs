namespace Paddock.Client;

/// <summary>
/// The base of every error the SDK raises for a failed call, except deadlines (<see cref="SandboxTimeoutException"/>)
/// and the caller's own cancellation (<see cref="OperationCanceledException"/>). Transport failures never escape
/// as raw <see cref="HttpRequestException"/>s: they arrive as <see cref="ServiceUnreachableException"/>.
/// </summary>
public class SandboxException : Exception
{
    /// <summary>Creates an error with a message for the caller.</summary>
    public SandboxException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }

    /// <summary>The HTTP status the server answered with, when the error came from one.</summary>
    public int? StatusCode { get; init; }
}

/// <summary>The sandbox does not exist, or is no longer running.</summary>
public sealed class SandboxNotFoundException : SandboxException
{
    /// <summary>Creates the error for one sandbox.</summary>
    public SandboxNotFoundException(string sandboxId, string message, Exception? inner = null)
        : base(message, inner)
    {
        SandboxId = sandboxId;
    }

    /// <summary>The sandbox the call named.</summary>
    public string SandboxId { get; }
}

/// <summary>A file, directory, process or template that the call named does not exist.</summary>
public sealed class NotFoundException : SandboxException
{
    /// <summary>Creates the error.</summary>
    public NotFoundException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>The API key or the sandbox's access token was missing or refused, or the user is unknown.</summary>
public sealed class AuthenticationException : SandboxException
{
    /// <summary>Creates the error.</summary>
    public AuthenticationException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>The server refused the request as malformed or invalid.</summary>
public sealed class InvalidArgumentException : SandboxException
{
    /// <summary>Creates the error.</summary>
    public InvalidArgumentException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>The control plane or the sandbox could not be reached at all (connection refused, DNS, TLS, reset).</summary>
public sealed class ServiceUnreachableException : SandboxException
{
    /// <summary>Creates the error for one address.</summary>
    public ServiceUnreachableException(Uri address, string message, Exception? inner = null)
        : base(message, inner)
    {
        Address = address;
    }

    /// <summary>The address the SDK tried.</summary>
    public Uri Address { get; }
}

/// <summary>
/// A deadline passed: the request timeout (<see cref="ConnectionOptions.RequestTimeout"/>) or the time a command,
/// terminal or watch may run. Derives from <see cref="TimeoutException"/>, so <c>catch (TimeoutException)</c> sees it.
/// </summary>
public sealed class SandboxTimeoutException : TimeoutException
{
    /// <summary>Creates the error.</summary>
    public SandboxTimeoutException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
