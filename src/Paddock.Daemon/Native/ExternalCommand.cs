using System.Diagnostics;
using System.Text;

namespace Paddock.Daemon.Native;

/// <summary>What a finished command printed and how it ended.</summary>
internal sealed record CommandResult(string FileName, int ExitCode, string StandardOutput, string StandardError)
{
    public bool Succeeded => ExitCode == 0;

    /// <summary>A one-line account for an error message: the command, its status and the end of what it printed.</summary>
    public string Describe()
    {
        var text = (StandardError.Trim() + "\n" + StandardOutput.Trim()).Trim();
        if (text.Length > 2000)
        {
            text = "…" + text[^2000..];
        }
        return $"{Path.GetFileName(FileName)} exited with {ExitCode}: {text}";
    }
}

/// <summary>
/// Runs a host program (runc, debootstrap, ldd, chroot) to completion. The program is started by .NET's own
/// fork/exec code, so no managed code runs in the child (STYLE.md, dotnet/runtime). Cancellation is graceful, then
/// forceful: SIGTERM, a bounded wait, then SIGKILL to the whole tree (CliWrap's model).
/// </summary>
internal static class ExternalCommand
{
    private static readonly TimeSpan KillGrace = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Runs <paramref name="fileName"/> with <paramref name="arguments"/>; <paramref name="onLine"/> sees every line of
    /// output as it comes (stdout and stderr alike). Throws <see cref="OperationCanceledException"/> after killing
    /// the program when <paramref name="cancellationToken"/> fires, and <see cref="FileNotFoundException"/> when
    /// the program does not exist. <paramref name="background"/>: the program runs at nice 10, set as soon as it has
    /// started (no nice(1) process in between; the first instants of it run at the normal priority).
    /// </summary>
    public static async Task<CommandResult> RunAsync(
        string fileName,
        IEnumerable<string> arguments,
        CancellationToken cancellationToken,
        Action<string>? onLine = null,
        IReadOnlyDictionary<string, string>? environment = null,
        bool background = false)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments)
        {
            start.ArgumentList.Add(a);
        }
        if (environment is not null)
        {
            foreach (var (k, v) in environment)
            {
                start.Environment[k] = v;
            }
        }

        using var process = new Process { StartInfo = start };
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var gate = new Lock();
        void Collect(StringBuilder target, string? line)
        {
            if (line is null)
            {
                return;
            }
            lock (gate)
            {
                target.AppendLine(line);
            }
            onLine?.Invoke(line);
        }
        process.OutputDataReceived += (_, e) => Collect(stdout, e.Data);
        process.ErrorDataReceived += (_, e) => Collect(stderr, e.Data);
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new FileNotFoundException($"cannot run {fileName}: {ex.Message}", fileName, ex);
        }
        if (background)
        {
            try
            {
                process.PriorityClass = ProcessPriorityClass.BelowNormal;
            }
            catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // It has ended already.
            }
        }
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await process.WaitForExitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            await StopAsync(process);
            throw;
        }
        // WaitForExitAsync returns after the output pipes reached end of file, so the builders are complete.
        lock (gate)
        {
            return new CommandResult(fileName, process.ExitCode, stdout.ToString(), stderr.ToString());
        }
    }

    private static async Task StopAsync(Process process)
    {
        try
        {
            if (Signals.Send(process.Id, Signals.SIGTERM) == 0)
            {
                using var grace = new CancellationTokenSource(KillGrace);
                await process.WaitForExitAsync(grace.Token);
                return;
            }
        }
        catch (OperationCanceledException)
        {
            // It ignored SIGTERM for the whole grace period: kill it below.
        }
        catch (InvalidOperationException)
        {
            return; // it had already exited
        }
        process.Kill(entireProcessTree: true);
        using var reap = new CancellationTokenSource(KillGrace);
        try
        {
            await process.WaitForExitAsync(reap.Token);
        }
        catch (OperationCanceledException)
        {
            // A process in uninterruptible sleep outlives SIGKILL for a while; the caller has been told it was cancelled.
        }
    }
}
