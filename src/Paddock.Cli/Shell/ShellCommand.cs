using System.CommandLine;
using System.Runtime.InteropServices;
using Paddock.Cli.Exec;
using Paddock.Cli.Native;
using Paddock.Client;

namespace Paddock.Cli.Shell;

/// <summary>
/// `paddock shell ID`: an interactive terminal on the sandbox's PTY. The local terminal is in raw mode, so every
/// key (Ctrl-C included) goes to the sandbox; window size changes follow through SIGWINCH.
/// </summary>
internal static class ShellCommand
{
    public static Command Build()
    {
        var id = new Argument<string>("id") { Description = "The sandbox" };
        var user = new Option<string?>("--user", "-u") { Description = "Account to log in as" };
        var cwd = new Option<string?>("--cwd", "-w") { Description = "Directory to start in" };
        var command = new Command("shell", "Open an interactive shell in a sandbox") { id, user, cwd };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            await using var sandbox = await CliSandbox.ConnectAsync(parse.GetValue(id)!, settings, ct);
            var (cols, rows) = Terminal.WindowSize() ?? (80, 24);
            var envs = new Dictionary<string, string>(StringComparer.Ordinal);
            if (Environment.GetEnvironmentVariable("TERM") is { Length: > 0 } term)
            {
                envs["TERM"] = term;
            }
            var pty = await sandbox.Pty.CreateAsync(new PtyOptions
            {
                Cols = cols,
                Rows = rows,
                User = parse.GetValue(user),
                Cwd = parse.GetValue(cwd),
                Envs = envs,
                Timeout = TimeSpan.Zero, // a shell lives as long as the user keeps it
            }, ct);
            await using (pty)
            {
                return await RunAsync(pty, ct);
            }
        }));
        return command;
    }

    private static async Task<int> RunAsync(PtyHandle pty, CancellationToken cancellationToken)
    {
        using var stdout = StdStreams.Output();
        using var raw = Terminal.EnterRawMode();
        using var resize = PosixSignalRegistration.Create(PosixSignal.SIGWINCH, context =>
        {
            context.Cancel = true;
            if (Terminal.WindowSize() is { } size)
            {
                // Fire and forget: the handler must return promptly; a failed resize only leaves the old size.
                _ = pty.ResizeAsync(size.Cols, size.Rows, CancellationToken.None).ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
            }
        });
        var input = Task.Run(() => PumpInputAsync(pty, cancellationToken), CancellationToken.None);
        try
        {
            await foreach (var chunk in pty.ReadOutputAsync(cancellationToken))
            {
                await stdout.WriteAsync(chunk, cancellationToken);
                await stdout.FlushAsync(cancellationToken);
            }
            var result = await pty.WaitAsync(cancellationToken);
            return result.ExitCode & 0xFF;
        }
        finally
        {
            raw?.Dispose();
            if (input.IsCompleted)
            {
                await input.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
            else
            {
                // Still blocked reading the keyboard: that read ends with the process.
                _ = input.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
            }
        }
    }

    private static async Task PumpInputAsync(PtyHandle pty, CancellationToken cancellationToken)
    {
        using var stdin = StdStreams.Input();
        var buffer = new byte[4096];
        int n;
        while ((n = await stdin.ReadAsync(buffer, cancellationToken)) > 0)
        {
            await pty.SendInputAsync(buffer.AsMemory(0, n), cancellationToken);
        }
        // End of our input (not a terminal, e.g. a pipe): ^D ends the remote shell as it would a local one.
        await pty.SendInputAsync(new byte[] { 4 }, cancellationToken);
    }
}
