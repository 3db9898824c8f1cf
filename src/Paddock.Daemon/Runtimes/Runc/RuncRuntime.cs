using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Native;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Templates;

using Paddock.Daemon.Runtimes.Host;

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
    private readonly ISandboxCgroups _cgroups;
    private readonly NetworkNamespaces _netns;
    private readonly AgentBundleBuilder _bundles;
    private readonly string _agentBinary;
    private readonly ILogger<RuncRuntime> _logger;
    private readonly KeyedLock _locks = new();
    private readonly UsageMeter _usage = new();
    private readonly Lazy<Task<AgentBundle>> _bundle;
    private readonly SandboxNetworks? _network;
    private readonly AgentExitWatcher _exits;
    private readonly DiskStock _disks;

    // The agent's host pid per sandbox (from its start or from runc's list after a restart), for IsOnlyAgentRunningAsync.
    private readonly ConcurrentDictionary<string, int> _agentPids = new(StringComparer.Ordinal);

    /// <param name="connections">Where the sandboxes' outbound connections are reported (the audit trail); null: not observed.</param>
    public RuncRuntime(RuncOptions options, string agentBinary, ILogger<RuncRuntime> logger, Networking.IConnectionSink? connections = null)
    {
        _options = options;
        _agentBinary = agentBinary;
        _logger = logger;
        // Before the cgroups are read: crun on a hybrid host may add a v1 hierarchy (hugetlb) that sandboxes then join.
        OciRuntime = OciRuntimeChoice.Choose(options, logger);
        RuntimeLog.OciRuntimeChosen(logger, OciRuntime.Name, OciRuntime.Binary, OciRuntime.Reason);
        _runc = new RuncCli(OciRuntime.Binary, options.RuncRoot, options.CgroupManager == CgroupManager.Systemd);
        _cgroups = Cgroups.Detect(options.CgroupParent, options.CgroupManager);
        _netns = new NetworkNamespaces();
        _bundles = new AgentBundleBuilder(options.AgentBundlesDirectory, AgentBundleBuilder.DefaultOptionalLibraries, logger);
        _bundle = new Lazy<Task<AgentBundle>>(() => _bundles.EnsureAsync(_agentBinary, CancellationToken.None));
        foreach (var dir in (string[])[options.RuncRoot, options.SandboxesDirectory, options.NetnsDirectory])
        {
            Directory.CreateDirectory(dir);
        }
        SandboxFilesystem.ValidatePathForOverlay(options.SandboxesDirectory);
        _network = options.Network is { } network ? new SandboxNetworks(network, options.NetworkStateDirectory, logger, connections) : null;
        RuntimeLog.CgroupLayout(logger, "runc", _cgroups.Mode, _cgroups.Parent);
        _exits = new AgentExitWatcher(id =>
        {
            // The cgroup outlives the agent until the destroy: an OOM kill is the likeliest reason an agent dies.
            if (_cgroups.OomKills(id) is long kills and > 0)
            {
                RuntimeLog.AgentExitAfterOom(_logger, id, kills);
            }
            return OnAgentExited?.Invoke(id) ?? Task.CompletedTask;
        }, logger);
        _disks = new DiskStock(options.DiskStockDirectory, options.DiskBytesPerInode, options.EnforceDiskSize ? options.DiskStockDepth : 0, logger);
    }

    /// <summary>The OCI runtime this tier drives (runc or crun) and why.</summary>
    internal OciRuntimeSelection OciRuntime { get; }

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
        SandboxFilesystem.ValidateTemplateLayers(spec);
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
            SandboxFilesystem.Prepare(spec, layout, _options.IdMapping, _network?.ResolvConf);
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
            await AgentReadiness.WaitAsync(spec.SandboxId, pid, ct => TryConnectAsync(spec.SandboxId, AgentBundle.AgentPort, ct),
                _options.StartTimeout, () => layout.LogTail(), cancellationToken);
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
        _cgroups.SetCpuWeight(sandboxId, background);
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
        return await _cgroups.FreezeAsync(sandboxId, cancellationToken);
    }

    /// <summary>
    /// Every pid in the sandbox's cgroups (its own and the pids hierarchy's work child, where the agent's spawn thread
    /// sits, so the agent may be listed twice) is the agent's.
    /// </summary>
    public ValueTask<bool> IsOnlyAgentRunningAsync(string sandboxId, CancellationToken cancellationToken)
    {
        if (!_agentPids.TryGetValue(sandboxId, out var agent))
        {
            return ValueTask.FromResult(false);
        }
        var pids = _cgroups.ProcessesOf(sandboxId);
        return ValueTask.FromResult(pids.Count > 0 && pids.All(p => p == agent));
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
        await _cgroups.KillAllAsync(sandboxId, cancellationToken);
        return true;
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
        _usage.Forget(id);
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
        await SandboxFilesystem.UnmountAllAsync(layout, _logger, cancellationToken);
        SandboxFilesystem.RemoveDirectory(layout);
        if (runcError is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(runcError);
        }
    }

    /// <summary>
    /// Filesystem only: runc has no working checkpoint here (CRIU 3.17 fails on this kernel, FACTS.md), so a pause ends
    /// every process and keeps the writable layer, and a resume boots the sandbox afresh on it.
    /// </summary>
    public PauseSupport PauseSupport => PauseSupport.FilesystemOnly;

    /// <summary>
    /// Kills every process (the cgroup's kill), writes the marker, then releases the rest (<see cref="SettleAsync"/>):
    /// runc's state, cgroups, the link's interface and rules (its record keeps the address and policy), the network
    /// namespace, the mounts. The directory stays: writable layer, disk image, config.json (the same agent, token and
    /// variables at the resume).
    /// </summary>
    public async Task PauseAsync(string sandboxId, bool keepMemory, CancellationToken cancellationToken)
    {
        if (keepMemory)
        {
            throw new SandboxPauseUnsupportedException(Name, memory: true);
        }
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        var layout = new SandboxLayout(_options, sandboxId);
        using var held = await _locks.AcquireAsync(sandboxId, cancellationToken);
        if (File.Exists(layout.PausedFile))
        {
            return;
        }
        if (!File.Exists(layout.ConfigFile))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        var clock = Stopwatch.StartNew();
        _exits.Forget(sandboxId);
        _agentPids.TryRemove(sandboxId, out _);
        _cgroups.Thaw(sandboxId);
        await _cgroups.KillAllAsync(sandboxId, cancellationToken);
        new PauseMarker(Memory: false, DateTimeOffset.UtcNow).Write(layout);
        using (var settle = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            await SettleAsync(layout, settle.Token);
        }
        RuntimeLog.SandboxPaused(_logger, sandboxId, false, clock.ElapsedMilliseconds, 0);
    }

    /// <summary>
    /// A fresh boot of the same bundle (config.json) on the kept writable layer, with the link's recorded address and
    /// policy; <paramref name="keepMemory"/> changes nothing, as this tier's pauses keep no memory.
    /// </summary>
    public async Task<RuntimeSandbox> ResumeAsync(string sandboxId, bool keepMemory, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        var layout = new SandboxLayout(_options, sandboxId);
        using var held = await _locks.AcquireAsync(sandboxId, cancellationToken);
        var marker = PauseMarker.TryRead(layout) ?? throw new SandboxNotFoundException(sandboxId);
        var clock = Stopwatch.StartNew();
        try
        {
            await SettleAsync(layout, cancellationToken);
            await _bundle.Value.WaitAsync(cancellationToken);
            SandboxFilesystem.Remount(layout, _logger);
            File.Delete(layout.PidFile);
            if (!await _runc.RunDetachedAsync(sandboxId, layout.Directory, layout.PidFile, layout.LogFile, cancellationToken))
            {
                throw new SandboxStartException(sandboxId, "runc run failed: " + layout.LogTail());
            }
            var pid = int.Parse(File.ReadAllText(layout.PidFile).Trim(), CultureInfo.InvariantCulture);
            NetworkNamespaces.Bind(pid, layout.NetnsFile);
            if (_network is not null)
            {
                await _network.ReattachAsync(sandboxId, layout.NetnsFile, cancellationToken);
            }
            await AgentReadiness.WaitAsync(sandboxId, pid, ct => TryConnectAsync(sandboxId, AgentBundle.AgentPort, ct),
                _options.StartTimeout, () => layout.LogTail(), cancellationToken);
            var metadata = SandboxMetadata.TryRead(layout.MetadataFile);
            PidReserve.Apply(_cgroups, sandboxId, pid, metadata?.Limits.MaxPids ?? 0, _logger);
            PauseMarker.Remove(layout);
            _exits.Watch(sandboxId, pid);
            _agentPids[sandboxId] = pid;
            RuntimeLog.SandboxResumed(_logger, sandboxId, marker.Memory, clock.ElapsedMilliseconds);
            return new RuntimeSandbox(sandboxId, pid, metadata?.StartedAt ?? DateTimeOffset.UtcNow);
        }
        catch (Exception ex)
        {
            RuntimeLog.ResumeFailed(_logger, sandboxId, ex);
            using (var settle = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
            {
                await SettleAsync(layout, settle.Token);
            }
            if (ex is SandboxStartException or OperationCanceledException)
            {
                throw;
            }
            throw new SandboxStartException(sandboxId, ex.Message, ex);
        }
    }

    /// <summary>Rewrites the bundle's agent token and variables (<see cref="AgentLaunch.RewriteIdentity"/>), which a filesystem-only resume boots.</summary>
    public Task KeepIdentityAsync(string sandboxId, IReadOnlyDictionary<string, string> envVars, string? accessToken, CancellationToken cancellationToken) =>
        AgentLaunch.KeepIdentityAsync(_options, _locks, sandboxId, envVars, accessToken, cancellationToken);

    public Task<IReadOnlyList<PausedSandbox>> ListPausedAsync(CancellationToken cancellationToken) =>
        Task.FromResult(LeftoverSweep.PausedIn(_options));

    /// <summary>
    /// Releases every host resource of a paused sandbox but its directory and link record: processes (an interrupted
    /// resume's too), runc's state, cgroups, the link's interface and rules, the network namespace, the mounts.
    /// </summary>
    private async Task SettleAsync(SandboxLayout layout, CancellationToken cancellationToken)
    {
        var id = layout.SandboxId;
        _exits.Forget(id);
        _usage.Forget(id);
        _agentPids.TryRemove(id, out _);
        _cgroups.Thaw(id);
        await _cgroups.RemoveAsync(id, cancellationToken);
        if (!_runc.TryForgetStopped(id))
        {
            await _runc.DeleteAsync(id, cancellationToken);
        }
        await _cgroups.RemoveAsync(id, cancellationToken);
        if (_network is not null)
        {
            await _network.SuspendAsync(id, cancellationToken);
        }
        NetworkNamespaces.Release(layout.NetnsFile);
        await SandboxFilesystem.UnmountAllAsync(layout, _logger, cancellationToken);
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
            var layout = new SandboxLayout(_options, c.Id);
            if (File.Exists(layout.PausedFile))
            {
                // Paused (a resume may be under way): ListPausedAsync reports it, and recovery must never take it for a stray.
                continue;
            }
            var metadata = SandboxMetadata.TryRead(layout.MetadataFile);
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
        var sweep = new LeftoverSweep(_options, _locks, SettleAsync, DestroyCoreAsync, _logger);
        var candidates = await sweep.CandidatesAsync(containers.Select(c => c.Id), _cgroups, _network, cancellationToken);
        return await sweep.RunAsync(candidates, alive, cancellationToken);
    }

    public async Task<SandboxUsage?> GetUsageAsync(string sandboxId, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            return null;
        }
        return await _usage.SampleAsync(_cgroups, new SandboxLayout(_options, sandboxId), cancellationToken);
    }

    public async ValueTask<Stream> ConnectAsync(string sandboxId, int port, CancellationToken cancellationToken) =>
        await TryConnectAsync(sandboxId, port, cancellationToken) ?? throw new SandboxPortUnreachableException(sandboxId, port, null);

    /// <summary><see cref="ConnectAsync"/>, with null instead of an exception when nothing listens on the port (the start's probes).</summary>
    private async ValueTask<Stream?> TryConnectAsync(string sandboxId, int port, CancellationToken cancellationToken)
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
            if (await RefusableConnect.ConnectAsync(socket, new IPEndPoint(IPAddress.Loopback, port), cancellationToken))
            {
                return new NetworkStream(socket, ownsSocket: true);
            }
            socket.Dispose();
            return null;
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
        return await SandboxFilesystem.SnapshotAsync(sandboxId, layout, destination,
            ct => _runc.PauseAsync(sandboxId, ct), ct => _runc.ResumeAsync(sandboxId, ct), _logger, cancellationToken);
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
