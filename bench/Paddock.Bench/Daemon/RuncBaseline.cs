using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Paddock.Bench.Native;

namespace Paddock.Bench.Daemon;

/// <summary>
/// The floor under a sandbox start: a bare <c>runc run</c> of <c>/bin/echo hi</c> in the same root filesystem (read
/// only), with the config <c>runc spec</c> writes (its namespaces, no network set up, no cgroup limits beyond the
/// default), timed from the spawn to "hi" on its stdout. Its own <c>--root</c> under a temporary directory.
/// </summary>
internal sealed class RuncBaseline : IDisposable
{
    private readonly string _dir;
    private readonly string _bundle;
    private readonly string _root;
    private int _next;

    public RuncBaseline(string rootfs)
    {
        _dir = Directory.CreateTempSubdirectory("paddock-bench-runc-").FullName;
        _bundle = Path.Combine(_dir, "bundle");
        _root = Path.Combine(_dir, "root");
        Directory.CreateDirectory(_bundle);
        Directory.CreateDirectory(_root);
        RunToEnd("runc", ["spec", "--bundle", _bundle]);
        var configPath = Path.Combine(_bundle, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config["root"] = new JsonObject { ["path"] = rootfs, ["readonly"] = true };
        config["process"]!["terminal"] = false;
        config["process"]!["args"] = new JsonArray("/bin/echo", "hi");
        File.WriteAllText(configPath, config.ToJsonString());
    }

    /// <summary>One <c>runc run</c>; returns the milliseconds from the spawn to "hi" on its stdout, then reaps it.</summary>
    public unsafe double RunOnce()
    {
        var id = $"paddock-bench-{Environment.ProcessId}-{_next++}";
        using var spawner = new Spawner("/usr/sbin/runc", ["--root", _root, "run", "--bundle", _bundle, id], quiet: true);
        var fds = stackalloc int[2];
        if (Posix.Pipe2(fds, Posix.O_CLOEXEC) != 0)
        {
            throw new IOException("pipe2 failed");
        }
        int pid;
        var clock = Stopwatch.StartNew();
        try
        {
            pid = spawner.Spawn(stdoutFd: fds[1]);
        }
        finally
        {
            Posix.Close(fds[1]);
        }
        var output = new StringBuilder();
        var buffer = stackalloc byte[256];
        double? elapsed = null;
        try
        {
            // Bounded: echo writes three bytes; EOF comes when runc (and the container) end.
            for (var reads = 0; reads < 1000; reads++)
            {
                var n = (int)Posix.Read(fds[0], buffer, 256);
                if (n <= 0)
                {
                    break;
                }
                output.Append(Encoding.UTF8.GetString(buffer, n));
                if (elapsed is null && output.ToString().Contains("hi", StringComparison.Ordinal))
                {
                    elapsed = clock.Elapsed.TotalMilliseconds;
                }
            }
        }
        finally
        {
            Posix.Close(fds[0]);
        }
        var exit = Spawner.Wait(pid);
        return exit == 0 && elapsed is { } ms
            ? ms
            : throw new IOException($"runc run exited {exit} with stdout '{output}'");
    }

    public void Dispose()
    {
        // runc run removes its container on exit; a run that failed halfway may leave one, so delete by name.
        for (var i = 0; i < _next; i++)
        {
            var id = $"paddock-bench-{Environment.ProcessId}-{i}";
            if (Directory.Exists(Path.Combine(_root, id)))
            {
                RunToEnd("runc", ["--root", _root, "delete", "--force", id]);
            }
        }
        Directory.Delete(_dir, recursive: true);
    }

    private static void RunToEnd(string file, string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            process.Kill();
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not end within 30 s");
        }
        if (process.ExitCode != 0)
        {
            throw new IOException($"{file} {string.Join(' ', args)} exited {process.ExitCode}: {stderr.Result}");
        }
    }
}
