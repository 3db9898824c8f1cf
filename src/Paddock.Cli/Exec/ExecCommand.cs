using System.CommandLine;
using Paddock.Cli.Native;
using Paddock.Client;

namespace Paddock.Cli.Exec;

/// <summary>
/// `paddock exec ID -- CMD...`: runs a command in a sandbox, streams its output as it comes, and leaves with the
/// command's exit code. One CMD argument is a shell command line; several are quoted and joined as an argv.
/// </summary>
internal static class ExecCommand
{
    public static Command Build()
    {
        var id = new Argument<string>("id") { Description = "The sandbox" };
        var cmd = new Argument<string[]>("command") { Description = "The command (after --); one argument is run by bash -c as it is", Arity = ArgumentArity.OneOrMore };
        var cwd = new Option<string?>("--cwd", "-w") { Description = "Working directory in the sandbox" };
        var user = new Option<string?>("--user", "-u") { Description = "Account to run as" };
        var env = new Option<string[]>("--env", "-e") { Description = "KEY=VALUE for the command (repeatable)" };
        var timeout = new Option<int>("--timeout") { Description = "Seconds the command may run (0: no limit)", DefaultValueFactory = _ => 0 };
        var stdin = new Option<bool>("--stdin", "-i") { Description = "Send this program's stdin to the command" };
        var command = new Command("exec", "Run a command in a sandbox, streaming its output; exits with its exit code") { id, cmd, cwd, user, env, timeout, stdin };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            if (parse.GetValue(timeout) < 0)
            {
                throw new CliException(ExitCodes.Usage, "--timeout must not be negative");
            }
            await using var sandbox = await CliSandbox.ConnectAsync(parse.GetValue(id)!, settings, ct);
            var forwardStdin = parse.GetValue(stdin);
            var handle = await sandbox.Commands.StartAsync(CommandLine(parse.GetValue(cmd)!), new CommandOptions
            {
                Cwd = parse.GetValue(cwd),
                User = parse.GetValue(user),
                Envs = CliApp.Pairs(parse.GetValue(env), "--env"),
                Timeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
                Stdin = forwardStdin,
            }, ct);
            await using (handle)
            {
                return await RunAsync(handle, forwardStdin, ct);
            }
        }));
        return command;
    }

    private static async Task<int> RunAsync(CommandHandle handle, bool forwardStdin, CancellationToken cancellationToken)
    {
        using var stdout = StdStreams.Output();
        using var stderr = StdStreams.Error();
        using var stopInput = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var input = forwardStdin ? Task.Run(() => PumpStdinAsync(handle, stopInput.Token), CancellationToken.None) : Task.CompletedTask;
        try
        {
            await foreach (var piece in handle.ReadOutputAsync(cancellationToken))
            {
                var target = piece.Stream == OutputStream.Stdout ? stdout : stderr;
                await target.WriteAsync(piece.Data, cancellationToken);
                await target.FlushAsync(cancellationToken);
            }
            var result = await handle.WaitAsync(cancellationToken);
            return result.ExitCode;
        }
        catch (CommandExitException exit)
        {
            if (exit.Result.Error is { Length: > 0 } error && exit.ExitCode < 0)
            {
                await Console.Error.WriteLineAsync($"paddock: the command ended: {error}");
            }
            // Exit statuses are one byte; a process ended by a signal reports -1, which becomes 255 as in a shell.
            return exit.ExitCode & 0xFF;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Ctrl-C here ends the remote command too, as it would end a local one.
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                await handle.KillAsync(limit.Token);
            }
            catch (Exception ex) when (ex is SandboxException or TimeoutException or OperationCanceledException)
            {
                await Console.Error.WriteLineAsync($"paddock: could not kill the command: {ex.Message}");
            }
            return ExitCodes.Interrupted;
        }
        finally
        {
            await stopInput.CancelAsync();
            if (!input.IsCompleted)
            {
                // The stdin pump may sit in a blocking read of our stdin; it ends with the process.
                _ = input.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
            }
            else
            {
                await input.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    private static async Task PumpStdinAsync(CommandHandle handle, CancellationToken cancellationToken)
    {
        using var stdin = StdStreams.Input();
        var buffer = new byte[64 * 1024];
        int n;
        while ((n = await stdin.ReadAsync(buffer, cancellationToken)) > 0)
        {
            await handle.SendStdinAsync(buffer.AsMemory(0, n), cancellationToken);
        }
        await handle.CloseStdinAsync(cancellationToken);
    }

    /// <summary>One argument as it is (a shell command line); several quoted for bash and joined.</summary>
    internal static string CommandLine(IReadOnlyList<string> args) =>
        args.Count == 1 ? args[0] : string.Join(' ', args.Select(Quote));

    private static string Quote(string arg)
    {
        if (arg.Length > 0 && arg.All(c => char.IsAsciiLetterOrDigit(c) || "-_./=:,+@%".Contains(c)))
        {
            return arg;
        }
        return "'" + arg.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
    }
}

/// <summary>Connecting to a sandbox for a CLI command (never kills it on the way out).</summary>
internal static class CliSandbox
{
    public static Task<Sandbox> ConnectAsync(string id, CliSettings settings, CancellationToken cancellationToken) =>
        Sandbox.ConnectAsync(id, new SandboxConnectOptions { Connection = settings.Connection, KillOnDispose = false }, cancellationToken);
}
