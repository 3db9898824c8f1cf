namespace Paddock.Envd.Connect;

/// <summary>
/// A Connect RPC error: a code and a message meant for the caller. Servers throw it to answer with that error;
/// clients throw it when the peer answered with one.
/// </summary>
public sealed class ConnectException : Exception
{
    /// <summary>Creates an error with a code and a message for the caller.</summary>
    public ConnectException(ConnectCode code, string message, Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
    }

    /// <summary>The Connect error code.</summary>
    public ConnectCode Code { get; }
}
