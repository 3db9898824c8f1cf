using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Paddock.Bench.Native;

namespace Paddock.Bench.Daemon;

/// <summary>
/// The floor under a sandbox start: a bare <c>runc run</c> (or <c>runsc run</c> for the gVisor tier) of
/// <c>/bin/echo hi</c> in the same root filesystem (read only), with the config <c>spec</c> writes (its namespaces, no
/// network set up, no cgroup limits beyond the default), timed from the spawn to "hi" on its stdout. Its own
/// <c>--root</c> under a temporary directory. With other <c>processArgs</c> (a long-lived process), runsc's
/// detached run, checkpoint, restore, exec and kill of that container are the raw side of the pause section.
/// </summary>
internal sealed class RawRunBaseline : IDisposable
{
    private readonly string _dir;
    private readonly string _bundle;
    private readonly string _root;
    private readonly string _binary;
    private readonly string[] _globalArgs;
    private readonly List<string> _detached = [];
    private int _next;

    /// <param name="name">The runtime's name in the figures ("runc", "runsc").</param>
    /// <param name="binary">Its program.</param>
    /// <param name="globalArgs">Flags before the command (runsc: its platform, and <c>--network=none</c>).</param>
    /// <param name="rootfs">The root filesystem the sandboxes start from.</param>
    /// <param name="processArgs">The container's process (default <c>/bin/echo hi</c>, what <see cref="RunOnce"/> times).</param>
    public RawRunBaseline(string name, string binary, string[] globalArgs, string rootfs, string[]? processArgs = null)
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
        config["process"]!["args"] = new JsonArray([.. (processArgs ?? ["/bin/echo", "hi"]).Select(a => (JsonNode)a)]);
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

    /// <summary>
    /// <c>run --detach</c> of the bundle's process as container <paramref name="id"/>, its stdout and stderr (which a
    /// detached container inherits from runsc) into <paramref name="outputFile"/>. Returns when runsc has started it.
    /// </summary>
    public void RunDetached(string id, string outputFile) =>
        DetachedCall(id, outputFile, ["run", "--detach", "--bundle", _bundle, id]);

    /// <summary><c>checkpoint --compression=none</c> (as the gVisor tier does) into <paramref name="imagePath"/>: the container stops.</summary>
    public void Checkpoint(string id, string imagePath) =>
        RunToEnd(_binary, [.. _globalArgs, "--root", _root, "checkpoint", "--compression=none", "--image-path", imagePath, id], TimeSpan.FromMinutes(5));

    /// <summary><c>restore --detach</c> of <paramref name="imagePath"/> as a new container <paramref name="id"/> over the same bundle.</summary>
    public void RestoreDetached(string id, string imagePath, string outputFile) =>
        DetachedCall(id, outputFile, ["restore", "--detach", "--bundle", _bundle, "--image-path", imagePath, id]);

    /// <summary>
    /// <c>exec</c> of <c>/bin/echo hi</c> in container <paramref name="id"/>: returns when "hi" arrives on its stdout
    /// (then waits for the exec to end, untimed).
    /// </summary>
    public void ExecEchoHi(string id)
    {
        var start = new ProcessStartInfo(_binary) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in (string[])[.. _globalArgs, "--root", _root, "exec", id, "/bin/echo", "hi"])
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        // Bounded: echo writes one line (null at EOF), and a wedged exec is killed after 60 s.
        var read = process.StandardOutput.ReadLineAsync();
        if (!read.Wait(TimeSpan.FromSeconds(60)) || !process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Name} exec of echo in {id} did not end within 60 s");
        }
        var line = read.Result;
        if (line != "hi")
        {
            throw new IOException($"{Name} exec in {id} printed '{line}' (exit {(process.HasExited ? process.ExitCode : -1)}): {stderr.Result}");
        }
    }

    /// <summary><c>kill</c> of container <paramref name="id"/>'s init with <paramref name="signal"/> (a name: USR1).</summary>
    public void Signal(string id, string signal) =>
        RunToEnd(_binary, [.. _globalArgs, "--root", _root, "kill", id, signal]);

    /// <summary><c>delete --force</c> of container <paramref name="id"/> (after a checkpoint it is stopped, not gone).</summary>
    public void Delete(string id)
    {
        RunToEnd(_binary, [.. _globalArgs, "--root", _root, "delete", "--force", id]);
        _detached.Remove(id);
    }

    private void DetachedCall(string id, string outputFile, string[] command)
    {
        _detached.Add(id);
        // Through sh, so that the container's stdio is the file and never a pipe the bench would wait on for EOF
        // (a detached container keeps its stdio open for as long as it runs).
        RunToEnd("/bin/sh", ["-c", "out=$1; shift; exec \"$@\" >\"$out\" 2>&1", "sh", outputFile, _binary, .. _globalArgs, "--root", _root, .. command],
            TimeSpan.FromMinutes(5));
    }

    public void Dispose()
    {
        foreach (var id in _detached.ToList())
        {
            try
            {
                Delete(id);
            }
            catch (IOException)
            {
                // Never started, or gone already.
            }
        }
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

    private static void RunToEnd(string file, string[] args) => RunToEnd(file, args, TimeSpan.FromSeconds(30));

    private static void RunToEnd(string file, string[] args, TimeSpan limit)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        // Read, not waited on: the limit holds even for a call that hangs with its stdout open.
        _ = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not end within {limit.TotalSeconds:0} s");
        }
        if (process.ExitCode != 0)
        {
            throw new IOException($"{file} {string.Join(' ', args)} exited {process.ExitCode}: {stderr.Result}");
        }
    }
}
