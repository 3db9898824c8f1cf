using System.Text.Json;
using System.Text.Json.Serialization;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Runc;

/// <summary>A container as <c>runc list</c> reports it.</summary>
internal sealed record RuncContainer(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("pid")] int Pid,
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("created")] DateTimeOffset Created)
{
    public bool IsAlive => Status is "running" or "paused";
}

[JsonSerializable(typeof(List<RuncContainer>))]
internal sealed partial class RuncJson : JsonSerializerContext;

/// <summary>The runc command line, always with the tier's own <c>--root</c>, so that it sees only our containers.</summary>
internal sealed class RuncCli
{
    // Every runc call is short; a stuck one (e.g. on a hung mount) must not hang a sandbox operation forever.
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(60);

    private readonly string _binary;
    private readonly string _root;
    private readonly string[] _global;

    /// <param name="binary">runc or crun (both take the same commands and global flags used here).</param>
    /// <param name="root">The tier's own state root.</param>
    /// <param name="systemdCgroup">Adds <c>--systemd-cgroup</c>: cgroupsPath is <c>slice:prefix:name</c> and systemd makes the scope.</param>
    public RuncCli(string binary, string root, bool systemdCgroup = false)
    {
        _binary = binary;
        _root = root;
        _global = systemdCgroup ? ["--root", root, "--systemd-cgroup"] : ["--root", root];
    }

    /// <summary>
    /// <c>runc run --detach</c>: sets the container up (namespaces, cgroups, mounts, seccomp), starts its init and
    /// returns. The container's stdio, and runc's own error message if it fails, go to <paramref name="logFile"/>: a
    /// detached container inherits runc's stdio, so they must be a file, never a pipe that someone has to keep
    /// reading. Returns whether runc succeeded; the reason is in the log.
    /// </summary>
    public async Task<bool> RunDetachedAsync(string id, string bundle, string pidFile, string logFile, CancellationToken cancellationToken)
    {
        // --no-new-keyring: by default runc gives each container a session keyring, charged to the uid root maps to,
        // and every sandbox maps root to the same host uid, whose quota (kernel.keys.maxkeys, 200 on Debian) then
        // capped the host at ~200 sandboxes. Sandboxes cannot use keyrings anyway: the seccomp profile refuses keyctl,
        // add_key and request_key.
        string[] arguments = [.. _global, "run", "--detach", "--no-new-keyring", "--bundle", bundle, "--pid-file", pidFile, id];
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(CallTimeout);
        try
        {
            return await OutputFileCommand.RunAsync(_binary, arguments, logFile, timeout.Token) == 0;
        }
        catch (FileNotFoundException ex)
        {
            throw Unavailable(ex.Message, ex);
        }
    }

    /// <summary>
    /// <c>runc delete --force</c>: kills the container's init (and with it its pid namespace) if it runs, waits for
    /// it, and removes runc's state and the container's cgroups. Returns false when runc does not know the id.
    /// </summary>
    public async Task<bool> DeleteAsync(string id, CancellationToken cancellationToken)
    {
        var result = await RunAsync(cancellationToken, "delete", "--force", id);
        if (result.Succeeded)
        {
            return true;
        }
        if (result.StandardError.Contains("does not exist", StringComparison.Ordinal))
        {
            return false;
        }
        throw new IOException($"runc delete of '{id}' failed: {result.Describe()}");
    }

    /// <summary>
    /// What <c>runc delete</c> still has to do for a container whose processes are all gone and whose cgroups the
    /// daemon has removed: remove runc's state directory. Done here, without starting runc (a Go program: 30-60 ms of
    /// CPU per delete on this project's VMs). Returns false, and removes nothing, when runc has to do it itself: the
    /// directory holds more than the state file of a started container (a container created but never started has
    /// its exec.fifo), the state cannot be read, or its init process still runs. True when runc knows no such id.
    /// </summary>
    public bool TryForgetStopped(string id)
    {
        var dir = Path.Combine(_root, id);
        string[] entries;
        try
        {
            entries = System.IO.Directory.GetFileSystemEntries(dir);
        }
        catch (DirectoryNotFoundException)
        {
            return true;
        }
        if (entries.Length != 1 || Path.GetFileName(entries[0]) != "state.json")
        {
            return false;
        }
        long pid;
        ulong start;
        try
        {
            using var state = JsonDocument.Parse(File.ReadAllBytes(entries[0]));
            pid = state.RootElement.GetProperty("init_process_pid").GetInt64();
            start = state.RootElement.GetProperty("init_process_start").GetUInt64();
        }
        catch (Exception ex) when (ex is IOException or JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return false;
        }
        if (pid <= 0 || ProcessStat.IsRunning(pid, start))
        {
            return false;
        }
        try
        {
            System.IO.Directory.Delete(dir, recursive: true);
            return true;
        }
        catch (DirectoryNotFoundException)
        {
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false; // left to runc delete, which reports what is wrong
        }
    }

    /// <summary><c>runc pause</c>: freezes every process of the container (cgroup freezer).</summary>
    public async Task PauseAsync(string id, CancellationToken cancellationToken)
    {
        var result = await RunAsync(cancellationToken, "pause", id);
        if (!result.Succeeded)
        {
            throw result.StandardError.Contains("does not exist", StringComparison.Ordinal)
                ? new SandboxNotFoundException(id)
                : new IOException($"runc pause of '{id}' failed: {result.Describe()}");
        }
    }

    /// <summary><c>runc resume</c>: thaws a container that <see cref="PauseAsync"/> froze.</summary>
    public async Task ResumeAsync(string id, CancellationToken cancellationToken)
    {
        var result = await RunAsync(cancellationToken, "resume", id);
        if (!result.Succeeded)
        {
            throw new IOException($"runc resume of '{id}' failed: {result.Describe()}");
        }
    }

    /// <summary>Every container under our root, alive or stopped.</summary>
    public async Task<IReadOnlyList<RuncContainer>> ListAsync(CancellationToken cancellationToken)
    {
        var result = await RunAsync(cancellationToken, "list", "--format", "json");
        if (!result.Succeeded)
        {
            throw new IOException($"runc list failed: {result.Describe()}");
        }
        // runc prints "null" when there is no container.
        return JsonSerializer.Deserialize(result.StandardOutput, RuncJson.Default.ListRuncContainer) ?? [];
    }

    private async Task<CommandResult> RunAsync(CancellationToken cancellationToken, params string[] args)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(CallTimeout);
        try
        {
            return await ExternalCommand.RunAsync(_binary, [.. _global, .. args], timeout.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"runc {args[0]} did not finish within {CallTimeout.TotalSeconds:0} s");
        }
        catch (FileNotFoundException ex)
        {
            throw Unavailable(ex.Message, ex);
        }
    }

    private static RuntimeUnavailableException Unavailable(string why, Exception? inner) => new(
        $"the runc tier cannot run runc ({why}); install it (apt-get install runc) or set Runc:RuncBinary (env PADDOCK_Runc__RuncBinary)", inner);
}
