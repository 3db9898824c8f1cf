using System.ComponentModel;
using System.Globalization;
using ModelContextProtocol;
using Paddock.Client;

namespace Paddock.Mcp;

/// <summary>run_command's answer.</summary>
internal sealed record CommandRun(
    [property: Description("The command's exit code (0: success).")] int ExitCode,
    string Stdout,
    string Stderr,
    [property: Description("Set when a stream was longer than the result holds: which file in the sandbox holds all of it.")] string? Note);

/// <summary>
/// Runs a command with its output bounded where it is made. The SDK keeps a command's whole output in memory, and
/// paddockd serves these tools for many callers: so the command's streams go to files in the sandbox, and only their
/// first and last <see cref="SandboxTools.OutputLimitBytes"/>/2 bytes come back. Three calls: write the script, run
/// it under <c>timeout</c> (coreutils; it signals the command's whole process group, so children end too), read the
/// bounded output. Files of outputs that fit are removed; longer ones stay for the agent to read.
/// </summary>
internal static class CommandRunner
{
    public static async Task<CommandRun> RunAsync(Sandbox sandbox, string command, TimeSpan timeout, string user, string? cwd,
        IReadOnlyDictionary<string, string>? envs, CancellationToken cancellationToken)
    {
        // Per user: a directory root made first would not be writable by user, and the other way round.
        var dir = $"/tmp/paddock-mcp-{user}";
        var name = $"{dir}/{Guid.NewGuid():N}";
        await sandbox.Files.WriteAsync(name + ".sh", command, new FilesystemOptions { User = user }, cancellationToken);
        var seconds = (int)Math.Ceiling(timeout.TotalSeconds);
        var run = $"timeout -k 5 {seconds} bash {Quote(name + ".sh")} >{Quote(name + ".out")} 2>{Quote(name + ".err")} </dev/null";
        CommandResult result;
        // A backstop over the in-sandbox timeout: the kill grace (5 s) and a margin for the calls themselves.
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout + TimeSpan.FromSeconds(30));
        try
        {
            result = await sandbox.Commands.RunAsync(run, new CommandOptions
            {
                User = user,
                Cwd = cwd,
                Envs = envs,
                Timeout = Timeout.InfiniteTimeSpan,
            }, limit.Token);
        }
        catch (CommandExitException ex)
        {
            result = ex.Result;
        }
        catch (OperationCanceledException) when (limit.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            result = new CommandResult { ExitCode = 124, Stdout = "", Stderr = "", Error = "deadline exceeded" };
        }

        var output = await ReadOutputAsync(sandbox, name, user, cancellationToken);
        // The wrapper's own failure (timeout's 125-127, a redirect that could not be made) is on its own stderr.
        var stderr = output.Stderr.Length == 0 && result.Stderr.Length > 0 ? Bounded(result.Stderr) : output.Stderr;
        if (result.ExitCode == 124)
        {
            throw new McpException($"the command did not finish within {seconds} s and was killed (raise timeoutSeconds, or run it in the background with '&' and poll). "
                 + $"Output so far:\nstdout:\n{output.Stdout}\nstderr:\n{stderr}" + (output.Note is null ? "" : "\n" + output.Note));
        }
        return new CommandRun(result.ExitCode, output.Stdout, stderr, output.Note);
    }

    private sealed record Output(string Stdout, string Stderr, string? Note);

    /// <summary>Reads the head and tail of both output files in one call; removes them (and the script) when nothing was cut.</summary>
    private static async Task<Output> ReadOutputAsync(Sandbox sandbox, string name, string user, CancellationToken cancellationToken)
    {
        const int half = SandboxTools.OutputLimitBytes / 2;
        string Show(string file, string redirect) =>
            $"s=$(stat -c %s {Quote(file)} 2>/dev/null || echo 0); "
            + $"if [ \"$s\" -le {SandboxTools.OutputLimitBytes} ]; then cat {Quote(file)} {redirect} 2>/dev/null; "
            + $"else {{ head -c {half} {Quote(file)}; printf '\\n[... %s bytes omitted ...]\\n' $((s - {2 * half})); tail -c {half} {Quote(file)}; }} {redirect}; echo \"$s\" >>{Quote(name + ".sizes")}; fi; ";
        var script = $"rm -f {Quote(name + ".sizes")}; " + Show(name + ".out", "") + Show(name + ".err", ">&2")
            + $"if [ ! -s {Quote(name + ".sizes")} ]; then rm -f {Quote(name + ".out")} {Quote(name + ".err")} {Quote(name + ".sh")}; fi; rm -f {Quote(name + ".sizes")}";
        CommandResult read;
        try
        {
            read = await sandbox.Commands.RunAsync(script, new CommandOptions { User = user, Timeout = TimeSpan.FromSeconds(60) }, cancellationToken);
        }
        catch (CommandExitException ex)
        {
            read = ex.Result;
        }
        var cut = read.Stdout.Contains(" bytes omitted ...]", StringComparison.Ordinal) || read.Stderr.Contains(" bytes omitted ...]", StringComparison.Ordinal);
        return new Output(read.Stdout, read.Stderr, cut
            ? string.Create(CultureInfo.InvariantCulture, $"output was longer than {SandboxTools.OutputLimitBytes} bytes per stream; the whole is in {name}.out and {name}.err in the sandbox (read parts with head, tail, grep)")
            : null);
    }

    private static string Bounded(string text) =>
        text.Length <= SandboxTools.OutputLimitBytes ? text : text[..(SandboxTools.OutputLimitBytes / 2)] + "\n[...]\n" + text[^(SandboxTools.OutputLimitBytes / 2)..];

    /// <summary>Single-quotes for bash (the paths here are made above, but a user name may hold anything).</summary>
    internal static string Quote(string text) => "'" + text.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
