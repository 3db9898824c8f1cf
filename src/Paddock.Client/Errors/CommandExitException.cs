namespace Paddock.Client;

/// <summary>A command finished with a non-zero exit code. <see cref="Result"/> holds what it printed.</summary>
public sealed class CommandExitException : SandboxException
{
    /// <summary>Creates the error for a finished command.</summary>
    public CommandExitException(CommandResult result)
        : base(Describe(result))
    {
        Result = result;
    }

    /// <summary>The command's exit code, output and error.</summary>
    public CommandResult Result { get; }

    /// <summary>The command's exit code.</summary>
    public int ExitCode => Result.ExitCode;

    private static string Describe(CommandResult result)
    {
        var detail = result.Error is { Length: > 0 } e ? $": {e}" : "";
        return $"the command exited with code {result.ExitCode}{detail}";
    }
}
