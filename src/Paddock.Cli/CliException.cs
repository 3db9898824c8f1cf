namespace Paddock.Cli;

/// <summary>An error for the user: a message and the exit code to leave with.</summary>
internal sealed class CliException : Exception
{
    public CliException(int exitCode, string message, Exception? inner = null)
        : base(message, inner)
    {
        ExitCode = exitCode;
    }

    public int ExitCode { get; }
}

/// <summary>
/// The CLI's own exit codes (sysexits.h where one fits). `paddock exec` and `paddock shell` leave with the remote
/// command's code instead when the command ran.
/// </summary>
internal static class ExitCodes
{
    public const int Ok = 0;
    public const int Failure = 1;
    public const int Usage = 64;         // EX_USAGE: bad arguments or settings
    public const int NotFound = 66;      // EX_NOINPUT: no such sandbox, file or template
    public const int Unavailable = 69;   // EX_UNAVAILABLE: the daemon (or sandbox) cannot be reached
    public const int NoPermission = 77;  // EX_NOPERM: the API key or access token was refused
    public const int Timeout = 124;      // as timeout(1)
    public const int Interrupted = 130;  // 128 + SIGINT
}
