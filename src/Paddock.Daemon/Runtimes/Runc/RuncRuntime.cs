using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Native;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Runtimes.Runc;

/// <summary>
/// The runc tier: each sandbox is a runc container with its own pid, mount, ipc, uts, network and user namespaces
/// (root inside is <see cref="IdMapping.HostBase"/> outside), Docker's default capabilities and seccomp filter,
/// no_new_privs, cgroup v1 limits, and a root filesystem that is an overlay of the shared read-only template with a
/// per-sandbox writable layer. The agent, from the read-only agent bundle, is its init process.
/// All sandbox traffic goes through <see cref="ConnectAsync"/>, to the sandbox's own loopback.
/// </summary>
internal sealed partial class RuncRuntime : ISandboxRuntime, IDisposable
{
    private readonly RuncOptions _options;
    private readonly RuncCli _runc;
    private readonly Cgroups _cgroups;
    private readonly NetworkNamespaces _netns;
    private readonly AgentBundleBuilder _bundles;
    private readonly string _agentBinary;
    private readonly ILogger<RuncRuntime> _logger;
    private readonly KeyedLock _locks = new();
    private readonly ConcurrentDictionary<string, CgroupSample> _lastCpuSample = new(StringComparer.Ordinal);
    private readonly Lazy<Task<AgentBundle>> _bundle;
    private readonly SandboxNetworks? _network;
    private readonly AgentExitWatcher _exits;
    private readonly DiskStock _disks;

    // The agent's host pid per sandbox (from its start or from runc's list after a restart), for IsOnlyAgentRunning.
    private readonly ConcurrentDictionary<string, int> _agentPids = new(StringComparer.Ordinal);

    public RuncRuntime(RuncOptions options, string agentBinary, ILogger<RuncRuntime> logger)
    {
        _options = options;
        _agentBinary = agentBinary;
        _logger = logger;
        _runc = new RuncCli(options.RuncBinary, options.RuncRoot);
        _cgroups = Cgroups.Discover(options.CgroupParent);
        _netns = new NetworkNamespaces();
        _bundles = new AgentBundleBuilder(options.AgentBundlesDirectory, AgentBundleBuilder.DefaultOptionalLibraries, logger);
        _bundle = new Lazy<Task<AgentBundle>>(() => _bundles.EnsureAsync(_agentBinary, CancellationToken.None));
        foreach (var dir in (string[])[options.RuncRoot, options.SandboxesDirectory, options.NetnsDirectory])
        {
            Directory.CreateDirectory(dir);
        }
        ValidatePathForOverlay(options.SandboxesDirectory);
        _network = options.Network is { } network ? new SandboxNetworks(network, options.NetworkStateDirectory, logger) : null;
        _exits = new AgentExitWatcher(id => OnAgentExited?.Invoke(id) ?? Task.CompletedTask, logger);
        _disks = new DiskStock(options.DiskStockDirectory, options.DiskBytesPerInode, options.EnforceDiskSize ? options.DiskStockDepth : 0, logger);
    }

    /// <summary>The sandbox disks made ahead (for tests).</summary>
    internal DiskStock Disks => _disks;

    /// <summary>
    /// Called (on the thread pool) when the agent of a started or listed sandbox exits on its own: the container is
    /// gone, so the sandbox should be ended (the daemon kills it, which destroys what is left). Not called when the
    /// sandbox is destroyed through this runtime.
    /// </summary>
    public Func<string, Task>? OnAgentExited { get; set; }

    /// <summary>Sandbox egress, or null when the tier gives sandboxes loopback only.</summary>
    internal SandboxNetworks? Network => _network;

    public string Name => "runc";

    public async Task<RuntimeSandbox> StartAsync(SandboxSpec spec, CancellationToken cancellationToken)
    {
        var layout = new SandboxLayout(_options, spec.SandboxId);
        if (spec.TemplateLayers.Count == 0)
        {
            throw new SandboxStartException(spec.SandboxId, "the template has no layers");
        }
        foreach (var layer in spec.TemplateLayers)
        {
            ValidatePathForOverlay(layer);
            if (!Directory.Exists(layer))
            {
                throw new SandboxStartException(spec.SandboxId, $"template layer {layer} does not exist");
            }
        }
        // With egress off (no Runc:Network) a sandbox has loopback only, whatever its policy: nothing goes out.
        var egress = spec.EffectiveEgress;
        using var held = await _locks.AcquireAsync(spec.SandboxId, cancellationToken);
        if (Directory.Exists(layout.Directory) || File.Exists(layout.NetnsFile))
        {
            // Not cleaned up: it is someone else's sandbox.
            throw new SandboxStartException(spec.SandboxId, "a sandbox with this id exists already");
        }

        var clock = Stopwatch.StartNew();
        try
        {
            var bundle = await _bundle.Value.WaitAsync(cancellationToken);
            var diskBytes = _options.EnforceDiskSize && spec.Limits.DiskBytes > 0 ? SandboxDisk.ImageBytes(spec.Limits.DiskBytes) : 0;
            if (diskBytes > 0)
            {
                // A disk made ahead arrives as the sandbox directory itself (a rename), else one is made here.
                if (!_disks.TryTake(diskBytes, layout.Directory))
                {
                    Directory.CreateDirectory(layout.Directory);
                    await SandboxDisk.CreateAsync(layout, spec.Limits.DiskBytes, _options.DiskBytesPerInode, cancellationToken);
                }
                spec.MarkStep?.Invoke("disk");
            }
            PrepareFilesystem(spec, layout);
            spec.MarkStep?.Invoke("rootfs");
            OciConfig.Write(spec, layout, bundle, _options, _cgroups);
            spec.MarkStep?.Invoke("oci-config");
            var prepared = clock.ElapsedMilliseconds;
            if (!await _runc.RunDetachedAsync(spec.SandboxId, layout.Directory, layout.PidFile, layout.LogFile, cancellationToken))
            {
                throw new SandboxStartException(spec.SandboxId, "runc run failed: " + layout.LogTail());
            }
            spec.MarkStep?.Invoke("runc-run");
            var ran = clock.ElapsedMilliseconds;
            var pid = int.Parse(File.ReadAllText(layout.PidFile).Trim(), CultureInfo.InvariantCulture);
            // Held from now on by the bind mount, whatever happens to the sandbox's processes.
            NetworkNamespaces.Bind(pid, layout.NetnsFile);
            spec.MarkStep?.Invoke("netns-bind");
            if (_network is not null)
            {
                // While the agent starts (it runs since runc returned): hidden when shorter than the agent's start.
                await _network.AttachAsync(spec.SandboxId, layout.NetnsFile, egress, cancellationToken);
                spec.MarkStep?.Invoke("network");
            }
            await WaitForAgentAsync(spec.SandboxId, layout, pid, cancellationToken);
            spec.MarkStep?.Invoke("agent-ready");
            if (diskBytes > 0)
            {
                // The next create's disk, made now that this one no longer competes with it for the CPU.
                _disks.Refill(diskBytes);
            }
            // Before any command of the sandbox runs (pools and template start commands come after this returns).
            PidReserve.Apply(_cgroups, spec.SandboxId, pid, spec.Limits.MaxPids, _logger);
            RuntimeLog.StartPhases(_logger, spec.SandboxId, prepared, ran - prepared, clock.ElapsedMilliseconds - ran);
            var metadata = SandboxMetadata.TryRead(layout.MetadataFile)!;
            RuntimeLog.SandboxStarted(_logger, spec.SandboxId, clock.ElapsedMilliseconds, pid);
            _exits.Watch(spec.SandboxId, pid);
            _agentPids[spec.SandboxId] = pid;
            return new RuntimeSandbox(spec.SandboxId, pid, metadata.StartedAt);
        }
        catch (Exception ex)
        {
            RuntimeLog.SandboxStartFailed(_logger, spec.SandboxId, ex);
            try
            {
                using var cleanup = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                await DestroyCoreAsync(layout, cleanup.Token);
            }
            catch (Exception cleanupError)
            {
                RuntimeLog.CleanupAfterFailedStartFailed(_logger, spec.SandboxId, cleanupError);
            }
            if (ex is SandboxStartException or OperationCanceledException)
            {
                throw;
            }
            throw new SandboxStartException(spec.SandboxId, ex.Message, ex);
        }
    }

    /// <summary>
    /// Creates the sandbox's directory, its writable layer and the overlay mount over the template. Nothing of the
    /// template is copied: the overlay shows the template's files until the sandbox changes them.
    /// </summary>
    private void PrepareFilesystem(SandboxSpec spec, SandboxLayout layout)
    {
        var map = _options.IdMapping;
        var root = map.ToHost(0);
        Directory.CreateDirectory(layout.Directory);
        new SandboxMetadata(spec.SandboxId, spec.TemplateLayers, DateTimeOffset.UtcNow, spec.Limits, spec.AllowInternetAccess).Write(layout.MetadataFile);

        // The overlay's root directory takes its owner and mode from the upper layer's: copy the template root's
        // (the top layer's: a snapshot layer carries the root directory as its sandbox last had it).
        var lowerRoot = Files.Stat(spec.TemplateLayers[0]);
        Directory.CreateDirectory(layout.Upper);
        Files.ChangeOwner(layout.Upper, lowerRoot.Uid, lowerRoot.Gid);
        Files.ChangeMode(layout.Upper, lowerRoot.Mode);
        Directory.CreateDirectory(layout.Work);
        Directory.CreateDirectory(layout.Rootfs);

        var errno = Mounts.Mount("overlay", layout.Rootfs, "overlay", Mounts.MS_NODEV,
            $"lowerdir={string.Join(':', spec.TemplateLayers)},upperdir={layout.Upper},workdir={layout.Work}");
        if (errno != 0)
        {
            throw Errno.Exception("mount overlay", layout.Rootfs, errno);
        }

        File.WriteAllText(layout.HostsFile, $"""
            127.0.0.1	localhost
            ::1	localhost ip6-localhost ip6-loopback
            127.0.1.1	{spec.Hostname}

            """);
        File.WriteAllText(layout.HostnameFile, spec.Hostname + "\n");
        var owned = new List<string> { layout.HostsFile, layout.HostnameFile };
        if (_network is not null)
        {
            File.WriteAllText(layout.ResolvConfFile, _network.ResolvConf);
            owned.Add(layout.ResolvConfFile);
        }
        foreach (var file in owned)
        {
            // The sandbox's root may edit them, as in Docker.
            Files.ChangeOwner(file, root, root);
            Files.ChangeMode(file, 0b110_100_100);
        }
    }

    private async Task WaitForAgentAsync(string sandboxId, SandboxLayout layout, int pid, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(_options.StartTimeout);
        // A probe is an open, two setns calls and a loopback connect (tens of microseconds), so probing often costs
        // little, while each wait past the agent's first listen is added to every cold create: 1, 2, 4, then every
        // 5 ms (was capped at 50 ms, which could add up to 50 ms to a start; issue 6's lean cold path).
        var delay = TimeSpan.FromMilliseconds(1);
        try
        {
            while (true)
            {
                if (!ProcessStat.IsRunning(pid))
                {
                    throw new SandboxStartException(sandboxId, "the agent exited before it answered: " + layout.LogTail());
                }
                try
                {
                    await using var stream = await ConnectAsync(sandboxId, AgentBundle.AgentPort, deadline.Token);
                    if (await AgentProbe.IsHealthyAsync(stream, deadline.Token))
                    {
                        return;
                    }
                }
                catch (Exception ex) when (ex is SandboxPortUnreachableException or IOException or SocketException)
                {
                    // Not listening yet, or it closed the connection while starting: try again.
                }
                await Task.Delay(delay, deadline.Token);
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5));
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new SandboxStartException(sandboxId,
                $"the agent did not answer GET /health within {_options.StartTimeout.TotalSeconds:0} s: " + layout.LogTail());
        }
    }

    public async Task DestroyAsync(string sandboxId, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            return; // no sandbox can have this id, so it is gone
        }
        var layout = new SandboxLayout(_options, sandboxId);
        using var held = await _locks.AcquireAsync(sandboxId, cancellationToken);
        await DestroyCoreAsync(layout, cancellationToken);
        RuntimeLog.SandboxDestroyed(_logger, sandboxId);
    }

    public Task SetCpuPriorityAsync(string sandboxId, bool background, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        // No lock: the pool lowers the shares before the start (which holds the lock until the agent answers) and
        // raises them at the hand-over; one write of cpu.shares needs no ordering with anything else.
        _cgroups.SetCpuShares(sandboxId, background ? Cgroups.BackgroundCpuShares : Cgroups.NormalCpuShares);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Writes the sandbox's freezer.state. No lock: a start holds the id's lock until the agent answers, and the
    /// idle freezer only freezes sandboxes that have started; kill and destroy thaw whatever they find.
    /// </summary>
    public async Task<bool> SetFrozenAsync(string sandboxId, bool frozen, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            return false;
        }
        if (!frozen)
        {
            _cgroups.Thaw(sandboxId);
            return false;
        }
        return await _cgroups.FreezeAsync(sandboxId);
    }

    /// <summary>
    /// Every pid in the sandbox's cgroups (its own and the pids hierarchy's work child, where the agent's spawn thread
    /// sits, so the agent may be listed twice) is the agent's.
    /// </summary>
    public bool IsOnlyAgentRunning(string sandboxId)
    {
        if (!_agentPids.TryGetValue(sandboxId, out var agent))
        {
            return false;
        }
        var pids = _cgroups.ProcessesOf(sandboxId);
        return pids.Count > 0 && pids.All(p => p == agent);
    }

    /// <summary>
    /// SIGKILLs the processes in the sandbox's cgroups until none is left. The first kill reaches its init (the
    /// agent, pid 1 of the sandbox's pid namespace), and the kernel then kills everything else in that namespace, so
    /// nothing forked meanwhile survives; the loop waits for the exits the cgroup still shows.
    /// </summary>
    public async Task<bool> KillProcessesAsync(string sandboxId, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            return true;
        }
        using var held = await _locks.AcquireAsync(sandboxId, cancellationToken);
        // Our own kill of the agent is no news.
        _exits.Forget(sandboxId);
        for (var attempt = 0; attempt < 400; attempt++)
        {
            var pids = _cgroups.ProcessesOf(sandboxId);
            if (pids.Count == 0)
            {
                return true;
            }
            foreach (var pid in pids)
            {
                Signals.Send(pid, Signals.SIGKILL);
            }
            // A frozen task (the idle freezer's, or a snapshot's pause) does not die of SIGKILL on the v1 freezer until
            // it is thawed; thawed after the kill, it never runs another instruction of its own.
            _cgroups.Thaw(sandboxId);
            // 400 x 5 ms bounds the wait for the exits to 2 s (longer under load: Task.Delay only waits at least that).
            await Task.Delay(5, cancellationToken);
        }
        throw new IOException($"processes of sandbox '{sandboxId}' were still running 2 s after SIGKILL: {string.Join(", ", _cgroups.ProcessesOf(sandboxId))}");
    }

    /// <summary>
    /// Removes every piece of the sandbox that exists, in the order that lets the next one go: the container (and
    /// with it every process), its cgroups, the network namespace, the mounts, the directory. Each step accepts that
    /// its piece is already gone, so this also cleans up after a start that failed halfway.
    /// </summary>
    private async Task DestroyCoreAsync(SandboxLayout layout, CancellationToken cancellationToken)
    {
        var id = layout.SandboxId;
        // Our own kill of the agent is no news.
        _exits.Forget(id);
        _lastCpuSample.TryRemove(id, out _);
        _agentPids.TryRemove(id, out _);
        IOException? runcError = null;
        // runc delete --force thaws a paused container itself, but the cgroup step's kill does not: a frozen task
        // ignores SIGKILL until it is thawed, and its cgroup cannot be removed before it has exited.
        _cgroups.Thaw(id);
        // The cgroups step kills every process of the sandbox, its init included, and removes its cgroups; of runc
        // delete's work only its state directory is then left, which TryForgetStopped removes without starting runc.
        // runc delete runs when that cannot be done safely.
        await _cgroups.RemoveAsync(id, cancellationToken);
        if (!_runc.TryForgetStopped(id))
        {
            try
            {
                await _runc.DeleteAsync(id, cancellationToken);
            }
            catch (IOException ex)
            {
                runcError = ex; // retried below, after the cgroups step has gone over the sandbox once more
            }
        }
        if (runcError is not null)
        {
            await _cgroups.RemoveAsync(id, cancellationToken);
            try
            {
                await _runc.DeleteAsync(id, cancellationToken);
                runcError = null;
            }
            catch (IOException ex)
            {
                // runc still fails (or is gone: FileNotFoundException): the mounts, the network namespace and the
                // directory are the daemon's own and are removed all the same; the failure is reported after that.
                runcError = ex;
            }
        }

        if (_network is not null)
        {
            await _network.DetachAsync(id, cancellationToken);
        }
        NetworkNamespaces.Release(layout.NetnsFile);
        await UnmountRootfsAsync(layout, cancellationToken);

        var left = MountTable.Under(layout.Directory);
        if (left.Count > 0)
        {
            // Never delete recursively through a mount: it would delete what is mounted.
            throw new IOException($"sandbox '{id}' still has mounts under {layout.Directory}: {string.Join(", ", left)}");
        }
        if (Directory.Exists(layout.Directory))
        {
            Directory.Delete(layout.Directory, recursive: true);
        }
        if (runcError is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(runcError);
        }
    }

    private async Task UnmountRootfsAsync(SandboxLayout layout, CancellationToken cancellationToken)
    {
        foreach (var mountPoint in MountTable.Under(layout.Directory))
        {
            for (var attempt = 0; ; attempt++)
            {
                var errno = Mounts.Unmount(mountPoint, Mounts.UMOUNT_NOFOLLOW);
                if (errno is 0 or Errno.EINVAL or Errno.ENOENT)
                {
                    break;
                }
                if (errno == Errno.EBUSY && attempt < 50)
                {
                    // Processes of the sandbox that were just killed can hold it for a moment; 50 x 20 ms bounds that.
                    RuntimeLog.OverlayBusy(_logger, layout.SandboxId);
                    await Task.Delay(20, cancellationToken);
                    continue;
                }
                if (errno == Errno.EBUSY)
                {
                    // Still busy after a second: detach it, so that it goes when its last user does.
                    errno = Mounts.Unmount(mountPoint, Mounts.MNT_DETACH | Mounts.UMOUNT_NOFOLLOW);
                    if (errno is 0 or Errno.EINVAL)
                    {
                        break;
                    }
                }
                throw Errno.Exception("umount", mountPoint, errno);
            }
        }
    }

    public async Task<IReadOnlyList<RuntimeSandbox>> ListAsync(CancellationToken cancellationToken)
    {
        var sandboxes = new List<RuntimeSandbox>();
        foreach (var c in await _runc.ListAsync(cancellationToken))
        {
            if (!c.IsAlive || !SandboxLayout.IsValidId(c.Id))
            {
                continue;
            }
            var metadata = SandboxMetadata.TryRead(new SandboxLayout(_options, c.Id).MetadataFile);
            sandboxes.Add(new RuntimeSandbox(c.Id, c.Pid, metadata?.StartedAt ?? c.Created));
            _agentPids[c.Id] = c.Pid;
            // A sandbox this runtime did not start (adopted after a daemon restart) is watched from here on; one that is
            // starting (its lock held) is watched by its start.
            if (!_locks.IsBusy(c.Id))
            {
                _exits.WatchIfNew(c.Id, c.Pid);
            }
        }
        return sandboxes;
    }

    public async Task<IReadOnlyList<string>> CleanupLeftoversAsync(CancellationToken cancellationToken)
    {
        var containers = await _runc.ListAsync(cancellationToken);
        var alive = containers.Where(c => c.IsAlive).Select(c => c.Id).ToHashSet(StringComparer.Ordinal);
        var candidates = new HashSet<string>(StringComparer.Ordinal);
        candidates.UnionWith(containers.Select(c => c.Id));
        candidates.UnionWith(Names(_options.SandboxesDirectory, directories: true));
        candidates.UnionWith(Names(_options.NetnsDirectory, directories: false));
        candidates.UnionWith(_cgroups.ExistingSandboxIds());
        if (_network is not null)
        {
            await _network.EnsureReadyAsync(cancellationToken);
            candidates.UnionWith(_network.RecordedSandboxIds());
        }

        var removed = new List<string>();
        foreach (var id in candidates.Order(StringComparer.Ordinal))
        {
            if (alive.Contains(id) || _locks.IsBusy(id) || !SandboxLayout.IsValidId(id))
            {
                continue;
            }
            try
            {
                using var held = await _locks.AcquireAsync(id, cancellationToken);
                await DestroyCoreAsync(new SandboxLayout(_options, id), cancellationToken);
                removed.Add(id);
                RuntimeLog.LeftoverRemoved(_logger, id);
            }
            catch (IOException ex)
            {
                RuntimeLog.LeftoverRemovalFailed(_logger, id, ex);
            }
        }
        return removed;
    }

    private static IEnumerable<string> Names(string directory, bool directories)
    {
        if (!Directory.Exists(directory))
        {
            return [];
        }
        var entries = directories ? Directory.EnumerateDirectories(directory) : Directory.EnumerateFiles(directory);
        // Staging directories of the agent bundle or partial names are not sandbox ids.
        return entries.Select(Path.GetFileName).OfType<string>().Where(SandboxLayout.IsValidId).ToList();
    }

    public async Task<SandboxUsage?> GetUsageAsync(string sandboxId, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            return null;
        }
        var layout = new SandboxLayout(_options, sandboxId);
        var metadata = SandboxMetadata.TryRead(layout.MetadataFile);
        var now = _cgroups.Sample(sandboxId);
        if (metadata is null || now is null)
        {
            return null;
        }
        // CPU use since the previous sample of this sandbox, else since it started; as a share of the cores it
        // may use, which is what E2B's metrics report (0-100).
        var previous = _lastCpuSample.TryGetValue(sandboxId, out var p) ? p : null;
        _lastCpuSample[sandboxId] = now;
        var sinceNs = previous?.CpuUsageNanoseconds ?? 0;
        var sinceTime = previous?.Timestamp ?? metadata.StartedAt;
        var wallNs = (now.Timestamp - sinceTime).TotalMilliseconds * 1e6;
        var cores = Math.Max(1, metadata.Limits.CpuCount);
        var percent = wallNs > 0 ? (now.CpuUsageNanoseconds - sinceNs) / (wallNs * cores) * 100 : 0;

        var disk = await Task.Run(() => DiskUsage(layout.Upper), cancellationToken);
        return new SandboxUsage(
            now.Timestamp,
            Math.Clamp(percent, 0, 100),
            cores,
            now.MemoryWorkingSetBytes,
            now.MemoryLimitBytes,
            disk,
            metadata.Limits.DiskBytes);
    }

    /// <summary>Bytes allocated by the writable layer (what the sandbox added or changed), hard links counted once.</summary>
    private static long DiskUsage(string upper)
    {
        var seen = new HashSet<(ulong, uint, uint)>();
        long total = 0;
        var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = 0 };
        try
        {
            foreach (var path in Directory.EnumerateFileSystemEntries(upper, "*", options))
            {
                if (Files.TryStat(path, out var s) == 0 && (s.LinkCount <= 1 || seen.Add((s.Inode, s.DevMajor, s.DevMinor))))
                {
                    total += s.AllocatedBytes;
                }
            }
        }
        catch (DirectoryNotFoundException)
        {
            // destroyed while we counted
        }
        return total;
    }

    public async ValueTask<Stream> ConnectAsync(string sandboxId, int port, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(port, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        var layout = new SandboxLayout(_options, sandboxId);
        var socket = _netns.CreateTcpSocket(sandboxId, layout.NetnsFile);
        try
        {
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset)
        {
            socket.Dispose();
            throw new SandboxPortUnreachableException(sandboxId, port, ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Freezes the container (runc pause: the cgroup freezer), copies its upper directory, and thaws it again
    /// whatever happens. Frozen, no process of the sandbox can write, so the copy is one point in time; writes in
    /// flight in the kernel finish before the freeze completes. The copy (see <see cref="LayerCopy"/>) makes new inodes,
    /// so the sandbox's later writes to its upper directory never reach the snapshot.
    /// </summary>
    public async Task<long> SnapshotFilesystemAsync(string sandboxId, string destination, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        var layout = new SandboxLayout(_options, sandboxId);
        // Held so that a destroy cannot remove the upper directory under the copy.
        using var held = await _locks.AcquireAsync(sandboxId, cancellationToken);
        if (!Directory.Exists(layout.Upper))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        var clock = Stopwatch.StartNew();
        await _runc.PauseAsync(sandboxId, cancellationToken);
        var paused = clock.ElapsedMilliseconds;
        long bytes;
        try
        {
            bytes = await LayerCopy.CopyAsync(layout.Upper, destination, cancellationToken);
        }
        finally
        {
            // Thawed even when the copy failed or the request was cancelled: a frozen sandbox is a hung sandbox.
            using var resumeTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await _runc.ResumeAsync(sandboxId, resumeTimeout.Token);
        }
        RemoveAgentLeftovers(destination);
        RuntimeLog.SnapshotTaken(_logger, sandboxId, bytes, paused, clock.ElapsedMilliseconds);
        return bytes;
    }

    /// <summary>
    /// The agent's own runtime files in the sandbox (its HTTP/2 hand-off sockets in /tmp, Paddock.Agent's
    /// H2cHandoff) belong to the agent process that made them: a sandbox started from the snapshot has its own
    /// agent, and without this every snapshot and every build step would add dead sockets to the layers.
    /// </summary>
    private static void RemoveAgentLeftovers(string layer)
    {
        var tmp = Path.Combine(layer, "tmp");
        if (!Directory.Exists(tmp))
        {
            return;
        }
        foreach (var socket in Directory.EnumerateFileSystemEntries(tmp, ".paddock-agent-*.sock"))
        {
            File.Delete(socket);
        }
    }

    /// <summary>overlayfs splits its options at ',' and lowerdir at ':'; a path with either cannot be named.</summary>
    private static void ValidatePathForOverlay(string path)
    {
        if (path.IndexOfAny([',', ':', '\\', '\n']) >= 0)
        {
            throw new ArgumentException($"path {path} cannot be used in an overlay mount: it contains ',', ':', '\\' or a newline");
        }
    }

    public async Task UpdateNetworkAsync(string sandboxId, EgressPolicy policy, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        if (_network is null)
        {
            if (policy.DeniesEverything)
            {
                return; // loopback only already denies everything
            }
            throw new SandboxNetworkUnsupportedException(Name);
        }
        using var held = await _locks.AcquireAsync(sandboxId, cancellationToken);
        await _network.UpdateAsync(sandboxId, policy, cancellationToken);
    }

    private int _disposed;

    public void Dispose()
    {
        // The container disposes the runtime once per service type it is registered under (ISandboxRuntime and
        // RuncRuntime, for the agent-exit wiring): the second call must be a no-op.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _network?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _disks.Dispose();
        _netns.Dispose();
        _exits.Dispose();
        _cgroups.RemoveParentIfEmpty();
    }
}
