using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Paddock.Daemon.Native;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Runtimes.Gvisor;

/// <summary>
/// Fork (issue 15): one capture of the running source, then one <c>runsc restore</c> of it per copy.
/// </summary>
/// <remarks>
/// The capture holds the source still with <c>runsc pause</c>, writes its memory with <c>runsc checkpoint
/// --leave-running</c> (the same Sentry goes on after the save) and copies its writable layer while it is still held,
/// so that the image and the files are of one instant; then the source runs again. Each copy gets a fresh directory
/// (its own disk and a copy of that layer), the source's config.json with the source's paths, namespace and cgroup
/// replaced by its own (a restore needs the run's mounts), a new network namespace and a new link: a new address.
/// The restored netstack takes the addresses of the namespace it is restored into (runsc configures the links and
/// routes of the restore's namespace as at a run; measured: the copy's agent answers on its own link's address, which
/// <see cref="ForkAsync"/> waits for), so no NAT is needed and each copy is reachable as any sandbox is. Connections
/// open at the capture are lost in the copies (<c>--net-disconnect-ok</c>); listening sockets keep listening.
/// </remarks>
internal sealed partial class GvisorRuntime
{
    // Restores at once: each is a Sentry and a gofer starting and reading the image; more than the cores gain nothing.
    private static readonly int ForkParallelism = Math.Max(2, Environment.ProcessorCount);

    // Forks under way in this instance: the leftover sweep keeps their captures.
    private int _forksRunning;

    /// <summary>runsc checkpoint --leave-running and restores of one image into new ids (FACTS.md: measured here).</summary>
    public bool CanFork => true;

    public async Task<IReadOnlyList<ForkedCopy>> ForkAsync(string sourceId, IReadOnlyList<string> copyIds, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sourceId))
        {
            throw new SandboxNotFoundException(sourceId);
        }
        foreach (var id in copyIds)
        {
            if (!SandboxLayout.IsValidId(id) || id == sourceId)
            {
                throw new ArgumentException($"invalid fork id '{id}'", nameof(copyIds));
            }
        }
        var source = new SandboxLayout(_options, sourceId);
        var capture = Path.Combine(_options.ForksDirectory, sourceId + "." + Guid.NewGuid().ToString("N")[..8]);
        Interlocked.Increment(ref _forksRunning);
        try
        {
            var clock = Stopwatch.StartNew();
            ForkCapture captured;
            using (await _locks.AcquireAsync(sourceId, cancellationToken))
            {
                captured = await CaptureAsync(source, capture, cancellationToken);
            }
            var capturedMs = clock.ElapsedMilliseconds;
            var results = new ForkedCopy[copyIds.Count];
            using var gate = new SemaphoreSlim(ForkParallelism);
            await Task.WhenAll(copyIds.Select(async (id, i) =>
            {
                await gate.WaitAsync(CancellationToken.None);
                try
                {
                    results[i] = await RestoreCopyAsync(captured, id, cancellationToken);
                }
                finally
                {
                    gate.Release();
                }
            }));
            RuntimeLog.SandboxForked(_logger, sourceId, copyIds.Count, results.Count(r => r.Sandbox is not null), capturedMs, clock.ElapsedMilliseconds);
            return results;
        }
        finally
        {
            DeleteDirectory(capture);
            Interlocked.Decrement(ref _forksRunning);
        }
    }

    /// <summary>
    /// A memory snapshot (issue 15): a fork's capture kept in <paramref name="destination"/> instead of a temporary
    /// directory, with what a later restore needs to read it back (<see cref="LoadCapture"/>).
    /// </summary>
    public async Task<long> SnapshotMemoryAsync(string sandboxId, string destination, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        if (Directory.Exists(destination))
        {
            throw new IOException($"{destination} exists already");
        }
        if (Directory.Exists(Path.Combine(new SandboxLayout(_options, sandboxId).Directory, "mounts")))
        {
            throw new MemorySnapshotUnavailableException($"sandbox '{sandboxId}' mounts volumes, whose files a memory snapshot cannot keep (a volume is shared, not copied)");
        }
        var clock = Stopwatch.StartNew();
        try
        {
            ForkCapture captured;
            using (await _locks.AcquireAsync(sandboxId, cancellationToken))
            {
                captured = await CaptureAsync(new SandboxLayout(_options, sandboxId), destination, cancellationToken);
            }
            await File.WriteAllTextAsync(captured.File(CaptureConfigFile), captured.Config.ToJsonString(), cancellationToken);
            captured.Metadata.Write(captured.File(CaptureMetadataFile));
            var about = new JsonObject { ["sourceId"] = sandboxId, ["hasDisk"] = captured.HasDisk };
            // Written last: a directory without it is an interrupted snapshot, which LoadCapture refuses.
            await File.WriteAllTextAsync(captured.File(CaptureAboutFile), about.ToJsonString(), cancellationToken);
            var bytes = Files.AllocatedBytesBeneath(destination);
            RuntimeLog.MemorySnapshotTaken(_logger, sandboxId, bytes, destination, clock.ElapsedMilliseconds);
            return bytes;
        }
        catch
        {
            DeleteDirectory(destination);
            throw;
        }
    }

    /// <summary>A restore of a memory snapshot: one more copy of a kept capture, made as a fork's copies are.</summary>
    public async Task<RuntimeSandbox> RestoreMemoryAsync(string image, SandboxSpec spec, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(spec.SandboxId))
        {
            throw new ArgumentException($"invalid sandbox id '{spec.SandboxId}'", nameof(spec));
        }
        if (spec.Mounts.Count > 0)
        {
            // As a fork refuses a source with volumes: the restored processes expect the capture's mounts, no others.
            throw new SandboxStartException(spec.SandboxId, "a sandbox restored from a memory snapshot cannot mount volumes");
        }
        var captured = LoadCapture(image) with { Policy = spec.EffectiveEgress };
        var copy = await RestoreCopyAsync(captured, spec.SandboxId, cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();
        return copy.Sandbox ?? throw new SandboxStartException(spec.SandboxId, "restore of the memory snapshot failed: " + copy.Error);
    }

    private const string CaptureConfigFile = "config.json";
    private const string CaptureMetadataFile = "metadata.json";
    private const string CaptureAboutFile = "capture.json";

    /// <summary>A capture <see cref="SnapshotMemoryAsync"/> kept; the source's layout is only paths (it may be gone).</summary>
    private ForkCapture LoadCapture(string directory)
    {
        JsonNode? about;
        try
        {
            about = JsonNode.Parse(File.ReadAllText(Path.Combine(directory, CaptureAboutFile)));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException)
        {
            throw new IOException($"{directory} holds no complete memory snapshot ({ex.Message})", ex);
        }
        var sourceId = about?["sourceId"]?.GetValue<string>();
        if (sourceId is null || !SandboxLayout.IsValidId(sourceId))
        {
            throw new IOException($"{directory} names no valid source sandbox");
        }
        var metadata = SandboxMetadata.TryRead(Path.Combine(directory, CaptureMetadataFile))
            ?? throw new IOException($"{directory} has no readable metadata");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(directory, CaptureConfigFile)))
            ?? throw new IOException($"{directory} has no config.json");
        var hasDisk = about?["hasDisk"]?.GetValue<bool>() ?? false;
        return new ForkCapture(new SandboxLayout(_options, sourceId), directory, metadata, config, EgressPolicy.AllowAll, hasDisk);
    }

    /// <summary>What every copy of one fork is made from.</summary>
    private sealed record ForkCapture(SandboxLayout Source, string Directory, SandboxMetadata Metadata, JsonNode Config, EgressPolicy Policy, bool HasDisk)
    {
        public string Image => Path.Combine(Directory, "image");

        public string Upper => Path.Combine(Directory, "upper");

        public string File(string name) => Path.Combine(Directory, name);
    }

    private async Task<ForkCapture> CaptureAsync(SandboxLayout source, string capture, CancellationToken cancellationToken)
    {
        var id = source.SandboxId;
        if (File.Exists(source.PausedFile) || !TryReadPid(source, out var pid) || !Native.ProcessStat.IsRunning(pid))
        {
            throw new SandboxNotFoundException(id);
        }
        if (Directory.Exists(Path.Combine(source.Directory, "mounts")))
        {
            // A volume is shared, not copied: a copy would need the same host directory bound again, and the restored
            // processes would then share it with the source behind the volume's accounting.
            throw new IOException($"sandbox '{id}' mounts volumes, and a sandbox with volumes cannot be forked");
        }
        var metadata = SandboxMetadata.TryRead(source.MetadataFile) ?? throw new IOException($"sandbox '{id}' has no readable metadata");
        var config = JsonNode.Parse(await File.ReadAllTextAsync(source.ConfigFile, cancellationToken)) ?? throw new IOException($"sandbox '{id}' has no config.json");
        await _network.EnsureReadyAsync(cancellationToken);
        var policy = _network.Find(id)?.Policy ?? throw new SandboxNotFoundException(id);
        var captured = new ForkCapture(source, capture, metadata, config, policy, File.Exists(source.DiskImage));
        Directory.CreateDirectory(capture);
        foreach (var file in (string[])[source.HostsFile, source.HostnameFile, source.ResolvConfFile])
        {
            if (File.Exists(file))
            {
                File.Copy(file, captured.File(Path.GetFileName(file)));
            }
        }
        Directory.CreateDirectory(captured.Image);
        // Thawed first: the idle freezer's frozen cgroup would hold the checkpoint's own work still.
        _cgroups.Thaw(id);
        await _runsc.PauseAsync(id, cancellationToken);
        try
        {
            // Still paused when the checkpoint resumes the kernel it saved: runsc pause holds the tasks by a pause of
            // its own, so that the layer copied next is of the image's instant.
            await _runsc.CheckpointAsync(id, captured.Image, cancellationToken, leaveRunning: true);
            await LayerCopy.CopyAsync(source.Upper, captured.Upper, cancellationToken);
        }
        finally
        {
            using var resumeTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await _runsc.ResumeAsync(id, resumeTimeout.Token);
        }
        // The agent's own leftovers in the layer (its sockets, pid files) are of the source's agent, which the copy's
        // restored agent is: kept as they are.
        return captured;
    }

    private async Task<ForkedCopy> RestoreCopyAsync(ForkCapture captured, string id, CancellationToken cancellationToken)
    {
        var layout = new SandboxLayout(_options, id);
        var clock = Stopwatch.StartNew();
        try
        {
            using var held = await _locks.AcquireAsync(id, cancellationToken);
            if (Directory.Exists(layout.Directory) || File.Exists(layout.NetnsFile))
            {
                return new ForkedCopy(id, null, "a sandbox with this id exists already");
            }
            try
            {
                await _bundle.Value.WaitAsync(cancellationToken);
                await _mountNamespace.Value.WaitAsync(cancellationToken);
                var limits = captured.Metadata.Limits;
                var diskBytes = captured.HasDisk ? SandboxDisk.ImageBytes(limits.DiskBytes) : 0;
                if (diskBytes > 0)
                {
                    if (!_disks.TryTake(diskBytes, layout.Directory))
                    {
                        Directory.CreateDirectory(layout.Directory);
                        await SandboxDisk.CreateAsync(layout, limits.DiskBytes, _options.DiskBytesPerInode, cancellationToken);
                    }
                }
                else
                {
                    Directory.CreateDirectory(layout.Directory);
                }
                var startedAt = DateTimeOffset.UtcNow;
                (captured.Metadata with { SandboxId = id, StartedAt = startedAt }).Write(layout.MetadataFile);
                await LayerCopy.CopyAsync(captured.Upper, layout.Upper, cancellationToken);
                Directory.CreateDirectory(layout.Work);
                SandboxFilesystem.Remount(layout, _logger);
                var root = _options.IdMapping.ToHost(0);
                foreach (var file in (string[])[layout.HostsFile, layout.HostnameFile, layout.ResolvConfFile])
                {
                    var from = captured.File(Path.GetFileName(file));
                    if (File.Exists(from))
                    {
                        File.Copy(from, file);
                        Files.ChangeOwner(file, root, root);
                        Files.ChangeMode(file, 0b110_100_100);
                    }
                }
                await File.WriteAllTextAsync(layout.ConfigFile, CopyConfig(captured, layout).ToJsonString(new JsonSerializerOptions { WriteIndented = true }), cancellationToken);
                _netns.Create(layout.NetnsFile);
                await _network.AttachAsync(id, layout.NetnsFile, captured.Policy, cancellationToken);
                var output = _logs.Open(layout);
                var restoreStart = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                if (!await _runsc.RestoreDetachedAsync(id, layout.Directory, captured.Image, layout.PidFile, output, cancellationToken))
                {
                    throw new SandboxStartException(id, "runsc restore failed: " + LogTail(layout));
                }
                if (!TryReadPid(layout, out var pid))
                {
                    throw new SandboxStartException(id, "runsc wrote no pid file");
                }
                await WaitForAgentAsync(layout, pid, restoreStart, cancellationToken);
                if (diskBytes > 0)
                {
                    _disks.Refill(diskBytes);
                }
                _exits.Watch(id, pid);
                RuntimeLog.ForkCopyRestored(_logger, captured.Source.SandboxId, id, clock.ElapsedMilliseconds, pid);
                return new ForkedCopy(id, new RuntimeSandbox(id, pid, startedAt), null);
            }
            catch (Exception ex)
            {
                RuntimeLog.SandboxStartFailed(_logger, id, ex);
                try
                {
                    using var cleanup = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                    await DestroyCoreAsync(layout, cleanup.Token);
                }
                catch (Exception cleanupError)
                {
                    RuntimeLog.CleanupAfterFailedStartFailed(_logger, id, cleanupError);
                }
                return new ForkedCopy(id, null, ex is OperationCanceledException ? "the restore was cancelled" : ex.Message);
            }
        }
        catch (OperationCanceledException)
        {
            // Cancelled while waiting for the id's lock: nothing of it was made.
            return new ForkedCopy(id, null, "the fork was cancelled");
        }
    }

    /// <summary>
    /// The source's config.json for a copy: every path into the source's directory moved to the copy's, the network
    /// namespace and the cgroup made the copy's; everything else (mount destinations, process, limits) as the run had
    /// it, as a restore requires.
    /// </summary>
    private JsonNode CopyConfig(ForkCapture captured, SandboxLayout copy)
    {
        var config = captured.Config.DeepClone();
        var sourceDirectory = captured.Source.Directory.TrimEnd('/');
        Rewrite(config);
        if (config["linux"] is JsonObject linux)
        {
            linux["cgroupsPath"] = _cgroups.OciPath(copy.SandboxId);
        }
        return config;

        void Rewrite(JsonNode? node)
        {
            switch (node)
            {
                case JsonObject obj:
                    foreach (var key in obj.Select(p => p.Key).ToList())
                    {
                        if (obj[key] is JsonValue value && value.TryGetValue<string>(out var text))
                        {
                            obj[key] = Moved(text);
                        }
                        else
                        {
                            Rewrite(obj[key]);
                        }
                    }
                    break;
                case JsonArray array:
                    for (var i = 0; i < array.Count; i++)
                    {
                        if (array[i] is JsonValue value && value.TryGetValue<string>(out var text))
                        {
                            array[i] = Moved(text);
                        }
                        else
                        {
                            Rewrite(array[i]);
                        }
                    }
                    break;
            }
        }

        string Moved(string text) =>
            text == captured.Source.NetnsFile ? copy.NetnsFile
            : text == sourceDirectory ? copy.Directory
            : text.StartsWith(sourceDirectory + "/", StringComparison.Ordinal) ? copy.Directory + text[sourceDirectory.Length..]
            : text;
    }

    /// <summary>Captures of forks that no fork of this instance is using (a daemon killed mid-fork left them).</summary>
    private void RemoveForkLeftovers()
    {
        if (Volatile.Read(ref _forksRunning) > 0 || !Directory.Exists(_options.ForksDirectory))
        {
            return;
        }
        foreach (var capture in Directory.EnumerateDirectories(_options.ForksDirectory))
        {
            try
            {
                Directory.Delete(capture, recursive: true);
                RuntimeLog.ForkCaptureRemoved(_logger, capture);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                RuntimeLog.LeftoverRemovalFailed(_logger, Path.GetFileName(capture), new IOException(ex.Message, ex));
            }
        }
    }
}
