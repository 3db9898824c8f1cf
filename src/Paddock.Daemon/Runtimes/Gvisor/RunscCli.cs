using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Gvisor;

/// <summary>A runsc container as <c>runsc list --format=json</c> shows it.</summary>
internal sealed record RunscContainer(string Id, int Pid, string Status, DateTimeOffset Created)
{
    public bool IsAlive => Status is "running" or "paused";
}

/// <summary>
/// The runsc command line, always with the tier's own <c>--root</c> (so that it sees only our containers) and the
/// same global flags on every call, as a restore must repeat the run's (FACTS.md).
/// </summary>
internal sealed class RunscCli
{
    // Every runsc call is short; a stuck one must not hang a sandbox operation forever.
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(60);

    private readonly GvisorOptions _options;
    private readonly string[] _global;

    public RunscCli(GvisorOptions options)
    {
        _options = options;
        _global =
        [
            "--root", options.RunscRoot,
            "--platform", options.Platform.ToString().ToLowerInvariant(),
            // netstack in the Sentry, over the veth in the sandbox's own network namespace (the spec names it).
            "--network=sandbox",
            // No gVisor overlay over the root: the Sentry writes through the gofer to the host overlay, whose upper
            // directory is on the sandbox's disk (the disk limit) and is what a filesystem snapshot copies. With
            // runsc's default (root:self) the writes stay in a file runsc keeps, beyond both (measured: a file the
            // sandbox wrote did not appear in the upper directory).
            "--overlay2=none",
            // A checkpoint (the later pause/resume/fork issue) must not fail on a TCP connection over the veth;
            // measured: without it the checkpoint of a sandbox that had served one connection failed.
            "--net-disconnect-ok",
            .. options.DebugLogDirectory is { Length: > 0 } debugLogs ? (string[])["--debug", "--debug-log=" + debugLogs.TrimEnd('/') + "/"] : [],
        ];
    }

    public IReadOnlyList<string> GlobalArguments => _global;

    /// <summary>
    /// <c>runsc run --detach</c> inside <see cref="GvisorMountNamespace"/>: starts the Sentry and the gofer, the
    /// agent inside, and returns. The container's stdio and runsc's own errors go to <paramref name="output"/>: a
    /// detached container inherits runsc's stdio, and the sandbox can reach it (root inside opens /proc/1/fd/1), so it
    /// is the FIFO that <see cref="Host.AgentLogDrain"/> drains with a bound, never a host file the sandbox could grow.
    /// </summary>
    public Task<bool> RunDetachedAsync(string id, string bundle, string pidFile, string output, CancellationToken cancellationToken) =>
        DetachedAsync(["run", "--detach", "--bundle", bundle, "--pid-file", pidFile, id], output, cancellationToken);

    /// <summary>
    /// <c>runsc restore --detach</c> of the checkpoint in <paramref name="imagePath"/> as container <paramref name="id"/>,
    /// from the same bundle (config.json, mounts) and global flags as its run, inside the same mount namespace: the
    /// Sentry comes back with every task where the checkpoint stopped it. Its stdio and runsc's errors go to
    /// <paramref name="output"/>, as for <see cref="RunDetachedAsync"/>.
    /// </summary>
    public Task<bool> RestoreDetachedAsync(string id, string bundle, string imagePath, string pidFile, string output, CancellationToken cancellationToken) =>
        DetachedAsync(["restore", "--detach", "--bundle", bundle, "--image-path", imagePath, "--pid-file", pidFile, id], output, cancellationToken);

    /// <summary>
    /// <c>runsc checkpoint</c> into <paramref name="imagePath"/>: the Sentry writes every task's memory and kernel state
    /// there and the container stops. Uncompressed: flate cost CPU time per GiB that a pause waits for (ARCHITECTURE.md).
    /// </summary>
    /// <remarks>
    /// <paramref name="leaveRunning"/>: the Sentry resumes its tasks after the save, in the same process (this runsc
    /// saves with statefile's Resume option; no restore of a new Sentry), for a fork's capture.
    /// </remarks>
    public async Task CheckpointAsync(string id, string imagePath, CancellationToken cancellationToken, bool leaveRunning = false)
    {
        var result = leaveRunning
            ? await RunAsync(cancellationToken, "checkpoint", "--compression=none", "--leave-running", "--image-path", imagePath, id)
            : await RunAsync(cancellationToken, "checkpoint", "--compression=none", "--image-path", imagePath, id);
        if (!result.Succeeded)
        {
            throw IsUnknown(result) ? new SandboxNotFoundException(id) : new IOException($"runsc checkpoint of '{id}' failed: {result.Describe()}");
        }
    }

    private async Task<bool> DetachedAsync(string[] arguments, string output, CancellationToken cancellationToken)
    {
        var command = GvisorMountNamespace.Enter(_options, [_options.RunscBinary, .. _global, .. arguments]);
        // /bin/sh only redirects and execs: no managed code between fork and exec. The FIFO's reader is open already,
        // so the shell's open of it does not wait.
        var start = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        foreach (var a in (string[])["-c", "log=$1; shift; exec \"$@\" </dev/null >>\"$log\" 2>&1", "sh", output, .. command])
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start /bin/sh");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(CallTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        if (process.ExitCode is 126 or 127)
        {
            throw Unavailable($"cannot run nsenter or {_options.RunscBinary}: {(process.ExitCode == 127 ? "not found" : "not executable")}", null);
        }
        return process.ExitCode == 0;
    }

    /// <summary><c>runsc delete --force</c>: stops the sandbox if it runs and removes runsc's state. False: runsc knows no such id.</summary>
    public async Task<bool> DeleteAsync(string id, CancellationToken cancellationToken)
    {
        var result = await RunAsync(cancellationToken, "delete", "--force", id);
        if (result.Succeeded)
        {
            return true;
        }
        if (IsUnknown(result))
        {
            return false;
        }
        throw new IOException($"runsc delete of '{id}' failed: {result.Describe()}");
    }

    /// <summary><c>runsc pause</c>: the Sentry stops every task of the sandbox.</summary>
    public async Task PauseAsync(string id, CancellationToken cancellationToken)
    {
        var result = await RunAsync(cancellationToken, "pause", id);
        if (!result.Succeeded)
        {
            throw IsUnknown(result) ? new SandboxNotFoundException(id) : new IOException($"runsc pause of '{id}' failed: {result.Describe()}");
        }
    }

    /// <summary><c>runsc resume</c>: lets the tasks that <see cref="PauseAsync"/> stopped run again.</summary>
    public async Task ResumeAsync(string id, CancellationToken cancellationToken)
    {
        var result = await RunAsync(cancellationToken, "resume", id);
        if (!result.Succeeded)
        {
            throw new IOException($"runsc resume of '{id}' failed: {result.Describe()}");
        }
    }

    /// <summary>
    /// <c>runsc kill</c> of <paramref name="signal"/> (a name such as <c>USR2</c>) to the container's init, the agent.
    /// False when runsc refused (the container is gone, say); the caller decides whether that matters.
    /// </summary>
    public async Task<bool> SignalAsync(string id, string signal, CancellationToken cancellationToken) =>
        (await RunAsync(cancellationToken, "kill", id, signal)).Succeeded;

    /// <summary>Every container under our root, alive or stopped.</summary>
    public async Task<IReadOnlyList<RunscContainer>> ListAsync(CancellationToken cancellationToken)
    {
        if (!Directory.Exists(_options.RunscRoot))
        {
            return [];
        }
        var result = await RunAsync(cancellationToken, "list", "--format=json");
        if (!result.Succeeded)
        {
            throw new IOException($"runsc list failed: {result.Describe()}");
        }
        var text = result.StandardOutput.Trim();
        if (text.Length == 0 || text == "null")
        {
            return [];
        }
        var list = new List<RunscContainer>();
        using var doc = JsonDocument.Parse(text);
        foreach (var c in doc.RootElement.EnumerateArray())
        {
            var created = c.TryGetProperty("created", out var cr) && cr.ValueKind == JsonValueKind.String
                && DateTimeOffset.TryParse(cr.GetString(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t) ? t : DateTimeOffset.UnixEpoch;
            list.Add(new RunscContainer(
                c.GetProperty("id").GetString() ?? "",
                c.TryGetProperty("pid", out var pid) && pid.ValueKind == JsonValueKind.Number ? pid.GetInt32() : 0,
                c.TryGetProperty("status", out var status) ? status.GetString() ?? "" : "",
                created));
        }
        return list;
    }

    private static bool IsUnknown(CommandResult result) =>
        result.StandardError.Contains("does not exist", StringComparison.OrdinalIgnoreCase)
        || result.StandardError.Contains("not found", StringComparison.OrdinalIgnoreCase);

    private async Task<CommandResult> RunAsync(CancellationToken cancellationToken, params string[] args)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(CallTimeout);
        try
        {
            return await ExternalCommand.RunAsync(_options.RunscBinary, [.. _global, .. args], timeout.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"runsc {args[0]} did not finish within {CallTimeout.TotalSeconds:0} s");
        }
        catch (FileNotFoundException ex)
        {
            throw Unavailable(ex.Message, ex);
        }
    }

    private static RuntimeUnavailableException Unavailable(string why, Exception? inner) => new(
        $"the gVisor tier cannot run runsc ({why}); install it with scripts/install-runsc or set Gvisor:RunscBinary", inner);
}
