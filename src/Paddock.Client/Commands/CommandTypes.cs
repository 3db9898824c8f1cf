namespace Paddock.Client;

/// <summary>How to start a command. Every property is optional.</summary>
public sealed record CommandOptions
{
    /// <summary>The time limit E2B's SDKs use for commands, terminals and watches: 60 seconds.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Environment variables for the command, on top of the sandbox's.</summary>
    public IReadOnlyDictionary<string, string>? Envs { get; init; }

    /// <summary>The working directory; default: the user's home directory (or the template's workdir).</summary>
    public string? Cwd { get; init; }

    /// <summary>The account to run as; default: the sandbox's default user.</summary>
    public string? User { get; init; }

    /// <summary>
    /// How long the command may run before envd ends it and the call fails with <see cref="SandboxTimeoutException"/>.
    /// Default <see cref="DefaultTimeout"/>; <see cref="TimeSpan.Zero"/> or <see cref="Timeout.InfiniteTimeSpan"/> for no limit.
    /// </summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>The limit for starting the command (the request timeout); default: the connection's.</summary>
    public TimeSpan? RequestTimeout { get; init; }

    /// <summary>Keeps stdin open so that <see cref="CommandHandle.SendStdinAsync(string, CancellationToken)"/> can write to it.</summary>
    public bool Stdin { get; init; }

    /// <summary>Called with each piece of standard output as it arrives (UTF-8 decoded, never splitting a character).</summary>
    public Action<string>? OnStdout { get; init; }

    /// <summary>Called with each piece of standard error as it arrives.</summary>
    public Action<string>? OnStderr { get; init; }
}

/// <summary>How to attach to a command that is already running.</summary>
public sealed record CommandConnectOptions
{
    /// <summary>How long to stay attached; default <see cref="CommandOptions.DefaultTimeout"/>; zero for no limit.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>The limit for attaching (the request timeout); default: the connection's.</summary>
    public TimeSpan? RequestTimeout { get; init; }

    /// <summary>Called with each piece of standard output that arrives after attaching.</summary>
    public Action<string>? OnStdout { get; init; }

    /// <summary>Called with each piece of standard error that arrives after attaching.</summary>
    public Action<string>? OnStderr { get; init; }
}

/// <summary>What a finished command left behind.</summary>
public sealed record CommandResult
{
    /// <summary>The exit code; -1 when the process did not exit normally (e.g. it was killed by a signal).</summary>
    public required int ExitCode { get; init; }

    /// <summary>Everything the command wrote to standard output.</summary>
    public required string Stdout { get; init; }

    /// <summary>Everything the command wrote to standard error.</summary>
    public required string Stderr { get; init; }

    /// <summary>envd's error text when the command failed to run or was ended (e.g. "signal: killed"); else null.</summary>
    public string? Error { get; init; }
}

/// <summary>Which stream a piece of command output came from.</summary>
public enum OutputStream
{
    /// <summary>Standard output.</summary>
    Stdout,

    /// <summary>Standard error.</summary>
    Stderr,
}

/// <summary>One piece of command output, in the order the sandbox sent it.</summary>
/// <param name="Stream">Standard output or standard error.</param>
/// <param name="Text">The piece as text (UTF-8; a character split across pieces is decoded whole, in the later one).</param>
/// <param name="Data">The bytes as the command wrote them.</param>
public sealed record CommandOutput(OutputStream Stream, string Text, ReadOnlyMemory<byte> Data);

/// <summary>A process running in the sandbox: a command, a terminal, or the template's start command.</summary>
public sealed record ProcessInfo
{
    /// <summary>The process id inside the sandbox.</summary>
    public required int Pid { get; init; }

    /// <summary>The tag the process was started with, if any.</summary>
    public string? Tag { get; init; }

    /// <summary>The executable.</summary>
    public required string Cmd { get; init; }

    /// <summary>The arguments.</summary>
    public required IReadOnlyList<string> Args { get; init; }

    /// <summary>The environment variables the process was started with.</summary>
    public required IReadOnlyDictionary<string, string> Envs { get; init; }

    /// <summary>The working directory, when one was given.</summary>
    public string? Cwd { get; init; }
}
