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
        // The FIFO's reader is open already, so opening it for the output does not wait.
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(CallTimeout);
        int status;
        try
        {
            status = await OutputFileCommand.RunAsync(command[0], command.Skip(1).ToArray(), output, timeout.Token);
        }
        catch (FileNotFoundException ex)
        {
            throw Unavailable(ex.Message, ex);
        }
        // nsenter's own codes for a command it could not exec (127: not found, 126: not executable); runsc never uses them.
        if (status is 126 or 127)
        {
            throw Unavailable($"nsenter cannot run {_options.RunscBinary}: {(status == 127 ? "not found" : "not executable")}", null);
        }
        return status == 0;
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

    /// <summary>
    /// The sandbox's processes by their pid inside it (<c>runsc ps --format json</c>, which the Sentry answers; the
    /// agent is 1). Throws <see cref="IOException"/> when runsc refuses (the container is gone).
    /// </summary>
    public async Task<IReadOnlyList<int>> ProcessIdsAsync(string id, CancellationToken cancellationToken)
    {
        var result = await RunAsync(cancellationToken, "ps", "--format", "json", id);
        if (!result.Succeeded)
        {
            throw new IOException($"runsc ps failed: {result.Describe()}");
        }
        using var doc = JsonDocument.Parse(result.StandardOutput);
        return doc.RootElement.ValueKind == JsonValueKind.Array ? [.. doc.RootElement.EnumerateArray().Select(p => p.GetInt32())] : [];
    }

    /// <summary>
    /// Every container under our root, alive or stopped, from runsc's own state files
    /// (<c>{sandbox}_sandbox:{container}.state</c>: <c>id</c>, <c>status</c>, <c>createdAt</c>, <c>sandbox.pid</c>), the
    /// status and pid <c>runsc list</c> reports. Not <c>runsc list</c> itself: it also asks each sandbox's Sentry, so it
    /// hangs while the idle freezer holds one frozen (measured: <c>runsc list</c> and <c>runsc state</c> still waiting
    /// after 5 s), and it is a Go process per call. A file caught while runsc rewrites it is read again (5 tries);
    /// one that vanished meanwhile was a container being deleted.
    /// </summary>
    public async Task<IReadOnlyList<RunscContainer>> ListAsync(CancellationToken cancellationToken)
    {
        if (!Directory.Exists(_options.RunscRoot))
        {
            return [];
        }
        var list = new List<RunscContainer>();
        foreach (var file in Directory.EnumerateFiles(_options.RunscRoot, "*.state"))
        {
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    if (ReadState(await File.ReadAllBytesAsync(file, cancellationToken)) is { } container)
                    {
                        list.Add(container);
                    }
                    break;
                }
                catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
                {
                    break;
                }
                catch (Exception ex) when (ex is JsonException or IOException && attempt < 5)
                {
                    await Task.Delay(20, cancellationToken);
                }
                catch (JsonException ex)
                {
                    throw new IOException($"runsc's state file {file} could not be read: {ex.Message}", ex);
                }
            }
        }
        return list;
    }

    /// <summary>One state file's container; null for a file without an id (not a container's).</summary>
    internal static RunscContainer? ReadState(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        using var doc = JsonDocument.ParseValue(ref reader);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.String)
        {
            return null;
        }
        var created = root.TryGetProperty("createdAt", out var cr) && cr.ValueKind == JsonValueKind.String
            && DateTimeOffset.TryParse(cr.GetString(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t) ? t : DateTimeOffset.UnixEpoch;
        var pid = root.TryGetProperty("sandbox", out var sandbox) && sandbox.ValueKind == JsonValueKind.Object
            && sandbox.TryGetProperty("pid", out var p) && p.ValueKind == JsonValueKind.Number ? p.GetInt32() : 0;
        return new RunscContainer(
            id.GetString()!,
            pid,
            root.TryGetProperty("status", out var status) && status.ValueKind == JsonValueKind.String ? status.GetString()! : "",
            created);
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
