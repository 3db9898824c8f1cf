using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Paddock.Bench.Native;

namespace Paddock.Bench.Daemon;

/// <summary>
/// The floor under a sandbox start: a bare <c>runc run</c> (or <c>runsc run</c> for the gVisor tier) of
/// <c>/bin/echo hi</c> in the same root filesystem (read only), with the config <c>spec</c> writes (its namespaces, no
/// network set up, no cgroup limits beyond the default), timed from the spawn to "hi" on its stdout. Its own
/// <c>--root</c> under a temporary directory.
/// </summary>
internal sealed class RawRunBaseline : IDisposable
{
    private readonly string _dir;
    private readonly string _bundle;
    private readonly string _root;
    private readonly string _binary;
    private readonly string[] _globalArgs;
    private int _next;

    /// <param name="name">The runtime's name in the figures ("runc", "runsc").</param>
    /// <param name="binary">Its program.</param>
    /// <param name="globalArgs">Flags before the command (runsc: its platform, and <c>--network=none</c>).</param>
    /// <param name="rootfs">The root filesystem the sandboxes start from.</param>
    public RawRunBaseline(string name, string binary, string[] globalArgs, string rootfs)
    {
        Name = name;
        _binary = binary;
        _globalArgs = globalArgs;
        _dir = Directory.CreateTempSubdirectory($"paddock-bench-{name}-").FullName;
        _bundle = Path.Combine(_dir, "bundle");
        _root = Path.Combine(_dir, "root");
        Directory.CreateDirectory(_bundle);
        Directory.CreateDirectory(_root);
        RunToEnd(binary, ["spec", "--bundle", _bundle]);
        var configPath = Path.Combine(_bundle, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config["root"] = new JsonObject { ["path"] = rootfs, ["readonly"] = true };
        config["process"]!["terminal"] = false;
        config["process"]!["args"] = new JsonArray("/bin/echo", "hi");
        File.WriteAllText(configPath, config.ToJsonString());
    }

    /// <summary>The runtime's name in the figures.</summary>
    public string Name { get; }

    /// <summary>One <c>run</c>; returns the milliseconds from the spawn to "hi" on its stdout, then reaps it.</summary>
    public unsafe double RunOnce()
    {
        var id = $"paddock-bench-{Environment.ProcessId}-{_next++}";
        using var spawner = new Spawner(_binary, [.. _globalArgs, "--root", _root, "run", "--bundle", _bundle, id], quiet: true);
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
            : throw new IOException($"{Name} run exited {exit} with stdout '{output}'");
    }

    public void Dispose()
    {
        // run removes its container on exit; a run that failed halfway may leave one, so delete by name.
        for (var i = 0; i < _next; i++)
        {
            var id = $"paddock-bench-{Environment.ProcessId}-{i}";
            if (Directory.Exists(Path.Combine(_root, id)))
            {
                RunToEnd(_binary, [.. _globalArgs, "--root", _root, "delete", "--force", id]);
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
