using System.Diagnostics;
using System.Globalization;

namespace Paddock.Bench.Cluster;

/// <summary>Runs the host tools the cluster bench sets up with (ip, runc, umount, psql): bounded, stderr in the error.</summary>
internal static class Tools
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    /// <summary>Runs <paramref name="file"/> to its end; returns its stdout; throws with its stderr on a non-zero exit.</summary>
    public static async Task<string> RunAsync(string file, IEnumerable<string> args, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {file}");
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(Limit);
        var stdout = process.StandardOutput.ReadToEndAsync(limit.Token);
        var stderr = process.StandardError.ReadToEndAsync(limit.Token);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            throw;
        }
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', start.ArgumentList)} exited with {process.ExitCode.ToString(CultureInfo.InvariantCulture)}: {(await stderr).Trim()}");
        }
        return await stdout;
    }

    /// <summary>As <see cref="RunAsync"/> for teardown: a failure (already gone) is logged, never thrown.</summary>
    public static async Task TryRunAsync(TextWriter log, string file, params string[] args)
    {
        try
        {
            await RunAsync(file, args, CancellationToken.None);
        }
        catch (Exception ex) when (ex is InvalidOperationException or OperationCanceledException or System.ComponentModel.Win32Exception)
        {
            log.WriteLine($"  cleanup: {ex.Message}");
        }
    }
}
