using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Native;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Runtimes.Gvisor;

/// <summary>
/// The gVisor tier: each sandbox runs on gVisor's Sentry, a kernel in user space between the sandbox's processes and
/// the host (runsc, <c>--platform=systrap</c> by default). What it shares with the runc tier comes from
/// <see cref="Host"/>: the agent bundle (read-only at /.paddock), the template overlay with a writable layer on the
/// sandbox's own disk (served to the Sentry by runsc's gofer, so snapshots copy the same upper directory), cgroup
/// limits (on the Sentry and the gofer), and a veth link with the egress policy per sandbox in a network namespace the
/// daemon makes (netstack inside the Sentry drives it). Traffic to the sandbox goes to its link address: its loopback
/// is inside the Sentry, out of the host's reach (<see cref="ConnectAsync"/>).
/// </summary>
internal sealed partial class GvisorRuntime : ISandboxRuntime, IDisposable
{
    // One attempt of the start's health probe: a SYN that netstack does not answer yet would otherwise wait for the
    // kernel's retransmission (1 s, then 3 s).
    private static readonly TimeSpan ProbeConnectTimeout = TimeSpan.FromMilliseconds(500);

    private readonly GvisorOptions _options;
    private readonly RunscCli _runsc;
    private readonly ISandboxCgroups _cgroups;
    private readonly NetworkNamespaces _netns;
    private readonly AgentBundleBuilder _bundles;
    private readonly string _agentBinary;
    private readonly ILogger<GvisorRuntime> _logger;
    private readonly KeyedLock _locks = new();
    private readonly UsageMeter _usage = new();
    private readonly Lazy<Task<AgentBundle>> _bundle;
    private readonly Lazy<Task> _mountNamespace;
    private readonly SandboxNetworks _network;
    private readonly AgentExitWatcher _exits;
    private readonly DiskStock _disks;
    private readonly AgentLogDrain _logs;

    /// <param name="connections">Where the sandboxes' outbound connections are reported (the audit trail); null: not observed.</param>
    public GvisorRuntime(GvisorOptions options, string agentBinary, ILogger<GvisorRuntime> logger, Networking.IConnectionSink? connections = null)
    {
        _options = options;
        _agentBinary = agentBinary;
        _logger = logger;
        // Before anything is mounted under the state directory (the disk stock mounts in its constructor).
        GvisorMountNamespace.PrepareMounts(options);
        foreach (var dir in (string[])[options.RunscRoot, options.SandboxesDirectory, options.NetnsDirectory])
        {
            Directory.CreateDirectory(dir);
        }
        SandboxFilesystem.ValidatePathForOverlay(options.SandboxesDirectory);
        _runsc = new RunscCli(options);
        _cgroups = Cgroups.Detect(options.CgroupParent);
        _netns = new NetworkNamespaces();
        // A readable loader: the Sentry reads what it executes (AgentBundleBuilder's executeOnlyLoader).
        _bundles = new AgentBundleBuilder(options.AgentBundlesDirectory, AgentBundleBuilder.DefaultOptionalLibraries, logger, executeOnlyLoader: false);
        _bundle = new Lazy<Task<AgentBundle>>(() => _bundles.EnsureAsync(_agentBinary, CancellationToken.None));
        _mountNamespace = new Lazy<Task>(() => GvisorMountNamespace.EnsureAsync(options, CancellationToken.None));
        _network = new SandboxNetworks(options.Network, options.NetworkStateDirectory, logger, connections);
        _exits = new AgentExitWatcher(id => OnAgentExited?.Invoke(id) ?? Task.CompletedTask, logger);
        _disks = new DiskStock(options.DiskStockDirectory, options.DiskBytesPerInode, options.EnforceDiskSize ? options.DiskStockDepth : 0, logger);
        _logs = new AgentLogDrain(options.AgentLogBytes, logger);
    }

    /// <summary>The drain of the sandboxes' agent output into their bounded agent.log (for tests).</summary>
    internal AgentLogDrain Logs => _logs;

    /// <summary>The end of the sandbox's agent.log, with what its pipe holds now written first.</summary>
    private string LogTail(SandboxLayout layout)
    {
        _logs.Flush(layout.SandboxId);
        return layout.LogTail();
    }

    /// <summary>
    /// Called (on the thread pool) when the Sentry of a started or listed sandbox exits on its own (its agent, the
    /// container's init, ended): the daemon kills the sandbox, which destroys what is left.
    /// </summary>
    public Func<string, Task>? OnAgentExited { get; set; }

    /// <summary>The sandboxes' links and policies.</summary>
    internal SandboxNetworks Network => _network;

    /// <summary>The sandbox disks made ahead (for tests).</summary>
    internal DiskStock Disks => _disks;

    /// <summary>The tier's name in records, requests and settings.</summary>
    public const string TierName = "gvisor";

    public string Name => TierName;

    public async Task<RuntimeSandbox> StartAsync(SandboxSpec spec, CancellationToken cancellationToken)
    {
        var layout = new SandboxLayout(_options, spec.SandboxId);
        SandboxFilesystem.ValidateTemplateLayers(spec);
        using var held = await _locks.AcquireAsync(spec.SandboxId, cancellationToken);
        if (Directory.Exists(layout.Directory) || File.Exists(layout.NetnsFile))
        {
            throw new SandboxStartException(spec.SandboxId, "a sandbox with this id exists already");
        }

        var clock = Stopwatch.StartNew();
        try
        {
            var bundle = await _bundle.Value.WaitAsync(cancellationToken);
            await _mountNamespace.Value.WaitAsync(cancellationToken);
            var diskBytes = _options.EnforceDiskSize && spec.Limits.DiskBytes > 0 ? SandboxDisk.ImageBytes(spec.Limits.DiskBytes) : 0;
            if (diskBytes > 0)
            {
                if (!_disks.TryTake(diskBytes, layout.Directory))
                {
                    Directory.CreateDirectory(layout.Directory);
                    await SandboxDisk.CreateAsync(layout, spec.Limits.DiskBytes, _options.DiskBytesPerInode, cancellationToken);
                }
                spec.MarkStep?.Invoke("disk");
            }
            SandboxFilesystem.Prepare(spec, layout, _options.IdMapping, _network.ResolvConf);
            spec.MarkStep?.Invoke("rootfs");
            // The namespace and its link exist before runsc starts: runsc copies the namespace's addresses and routes
            // into netstack when the sandbox starts (and takes them off the kernel's interface).
            _netns.Create(layout.NetnsFile);
            await _network.AttachAsync(spec.SandboxId, layout.NetnsFile, spec.EffectiveEgress, cancellationToken);
            spec.MarkStep?.Invoke("network");
            GvisorConfig.Write(spec, layout, bundle, _options, _cgroups);
            spec.MarkStep?.Invoke("oci-config");
            var output = _logs.Open(layout);
            var prepared = clock.ElapsedMilliseconds;
            if (!await _runsc.RunDetachedAsync(spec.SandboxId, layout.Directory, layout.PidFile, output, cancellationToken))
            {
                throw new SandboxStartException(spec.SandboxId, "runsc run failed: " + LogTail(layout));
            }
            spec.MarkStep?.Invoke("runsc-run");
            var ran = clock.ElapsedMilliseconds;
            // runsc's pid file names the sandbox process (the Sentry): it lives exactly as long as the sandbox.
            var pid = int.Parse(File.ReadAllText(layout.PidFile).Trim(), CultureInfo.InvariantCulture);
            await WaitForAgentAsync(layout, pid, restoreStart: null, cancellationToken);
            spec.MarkStep?.Invoke("agent-ready");
            if (diskBytes > 0)
            {
                _disks.Refill(diskBytes);
            }
            RuntimeLog.StartPhases(_logger, spec.SandboxId, prepared, ran - prepared, clock.ElapsedMilliseconds - ran);
            var metadata = SandboxMetadata.TryRead(layout.MetadataFile)!;
            RuntimeLog.SandboxStarted(_logger, spec.SandboxId, clock.ElapsedMilliseconds, pid);
            _exits.Watch(spec.SandboxId, pid);
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
            return;
        }
        var layout = new SandboxLayout(_options, sandboxId);
        using var held = await _locks.AcquireAsync(sandboxId, cancellationToken);
        await DestroyCoreAsync(layout, cancellationToken);
        RuntimeLog.SandboxDestroyed(_logger, sandboxId);
    }

    /// <summary>
    /// Removes every piece of the sandbox that exists: its host processes (the Sentry, the gofer, the platform's
    /// stubs: everything in its cgroups), runsc's state, its cgroups, the link, the network namespace, the mounts, the
    /// directory. Each step accepts that its piece is already gone, so this also cleans up after a failed start.
    /// </summary>
    private async Task DestroyCoreAsync(SandboxLayout layout, CancellationToken cancellationToken)
    {
        var id = layout.SandboxId;
        _exits.Forget(id);
        _usage.Forget(id);
        _logs.Close(id);
        _cgroups.Thaw(id);
        // Killing the Sentry ends every process of the sandbox at once (they are its tasks); the cgroup step kills
        // the gofer and stubs with it. runsc delete then finds a dead sandbox and only removes its state.
        await _cgroups.RemoveAsync(id, cancellationToken);
        IOException? runscError = null;
        try
        {
            await _runsc.DeleteAsync(id, cancellationToken);
        }
        catch (IOException ex)
        {
            // The rest is the daemon's own and goes all the same; the failure is reported after that.
            runscError = ex;
        }
        await _cgroups.RemoveAsync(id, cancellationToken);
        await _network.DetachAsync(id, cancellationToken);
        NetworkNamespaces.Release(layout.NetnsFile);
        await SandboxFilesystem.UnmountAllAsync(layout, _logger, cancellationToken);
        SandboxFilesystem.RemoveDirectory(layout);
        if (runscError is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(runscError);
        }
    }

    public async Task<IReadOnlyList<RuntimeSandbox>> ListAsync(CancellationToken cancellationToken)
    {
        var sandboxes = new List<RuntimeSandbox>();
        foreach (var c in await _runsc.ListAsync(cancellationToken))
        {
            // runsc's state file keeps the status it recorded: a Sentry killed behind its back still shows "running"
            // (measured), so the pid decides.
            if (!c.IsAlive || c.Pid <= 0 || !SandboxLayout.IsValidId(c.Id) || !Native.ProcessStat.IsRunning(c.Pid))
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
            if (!_locks.IsBusy(c.Id))
            {
                _exits.WatchIfNew(c.Id, c.Pid);
                // A restarted daemon reads the running sandbox's output pipe again (its writes failed with EPIPE meanwhile).
                _logs.Adopt(layout);
            }
        }
        return sandboxes;
    }

    public async Task<IReadOnlyList<string>> CleanupLeftoversAsync(CancellationToken cancellationToken)
    {
        var containers = await _runsc.ListAsync(cancellationToken);
        // runsc's state file can say "running" for a Sentry that is gone, so the pid decides.
        var alive = containers.Where(c => c.IsAlive && c.Pid > 0 && Native.ProcessStat.IsRunning(c.Pid)).Select(c => c.Id).ToHashSet(StringComparer.Ordinal);
        // A daemon killed while a fork or a snapshot held a sandbox with runsc pause left it so: it runs again.
        foreach (var c in containers.Where(c => c.Status == "paused" && alive.Contains(c.Id) && SandboxLayout.IsValidId(c.Id) && !_locks.IsBusy(c.Id)))
        {
            if (!File.Exists(new SandboxLayout(_options, c.Id).PausedFile))
            {
                await _runsc.ResumeAsync(c.Id, cancellationToken);
                RuntimeLog.LeftPausedResumed(_logger, c.Id);
            }
        }
        RemoveForkLeftovers();
        var sweep = new LeftoverSweep(_options, _locks, SettleAsync, DestroyCoreAsync, _logger);
        var candidates = await sweep.CandidatesAsync(containers.Select(c => c.Id), _cgroups, _network, cancellationToken);
        return await sweep.RunAsync(candidates, alive, cancellationToken);
    }

    /// <summary>
    /// CPU and memory of the sandbox's cgroups, which hold the Sentry and the gofer: the memory includes the Sentry's
    /// own (measured about 30-40 MiB idle, see ARCHITECTURE.md), which the sandbox's limit also has to hold.
    /// </summary>
    public async Task<SandboxUsage?> GetUsageAsync(string sandboxId, CancellationToken cancellationToken) =>
        SandboxLayout.IsValidId(sandboxId)
            ? await _usage.SampleAsync(_cgroups, new SandboxLayout(_options, sandboxId), cancellationToken)
            : null;

    /// <summary>
    /// A TCP connection from the daemon, in the host's network namespace, to the sandbox's link address. The
    /// sandbox's loopback is netstack's, inside the Sentry: no host socket can reach it, so (unlike the runc tier) a
    /// port is reachable here only when its server listens on the sandbox's interface (0.0.0.0 or the link address),
    /// as the agent does. The link's nftables guards keep other sandboxes out (forwarding between links is dropped)
    /// and the sandbox from opening connections to the host; this connection is the host's own, and only its replies
    /// come back in.
    /// </summary>
    public async ValueTask<Stream> ConnectAsync(string sandboxId, int port, CancellationToken cancellationToken) =>
        await TryConnectAsync(sandboxId, port, cancellationToken) ?? throw new SandboxPortUnreachableException(sandboxId, port, null);

    /// <summary>
    /// <see cref="ConnectAsync"/>, with null instead of an exception when nothing listens on the port or the link
    /// address is not reachable yet: the start's readiness probes expect that, and a SocketException per refused probe
    /// was most of paddockd's own CPU per cold create on the runc tier before <see cref="RefusableConnect"/>.
    /// </summary>
    private async ValueTask<Stream?> TryConnectAsync(string sandboxId, int port, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(port, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        await _network.EnsureReadyAsync(cancellationToken);
        if (_network.Find(sandboxId) is not { } link)
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            if (await RefusableConnect.ConnectAsync(socket, new IPEndPoint(link.SandboxAddress, port), cancellationToken, unreachableIsRefusal: true))
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
    /// Pauses the sandbox (runsc pause: the Sentry stops every task), copies its upper directory, and resumes it
    /// whatever happens. With <c>--overlay2=none</c> the Sentry writes through the gofer to that directory, so the
    /// copy holds what the sandbox wrote (checked by the tier's snapshot test).
    /// </summary>
    public async Task<long> SnapshotFilesystemAsync(string sandboxId, string destination, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        var layout = new SandboxLayout(_options, sandboxId);
        using var held = await _locks.AcquireAsync(sandboxId, cancellationToken);
        return await SandboxFilesystem.SnapshotAsync(sandboxId, layout, destination,
            ct => _runsc.PauseAsync(sandboxId, ct), ct => _runsc.ResumeAsync(sandboxId, ct), _logger, cancellationToken);
    }

    /// <summary>runsc checkpoint keeps every task's memory and kernel state (FACTS.md: measured on this host).</summary>
    public PauseSupport PauseSupport => PauseSupport.FilesystemAndMemory;

    /// <summary>
    /// With <paramref name="keepMemory"/>: <c>runsc checkpoint</c> into the sandbox's directory (the Sentry writes its
    /// tasks' memory and kernel state and exits); without: every process killed. Either way the writable layer stays
    /// in its upper directory (with <c>--overlay2=none</c> the checkpoint holds none of the rootfs, FACTS.md), the
    /// marker is written, and then everything else the sandbox held on the host is released (<see cref="SettleAsync"/>):
    /// its runsc state, cgroups, link interface and rules (the link's record keeps its address for the restore, whose
    /// netstack holds it), network namespace and mounts.
    /// </summary>
    public async Task PauseAsync(string sandboxId, bool keepMemory, CancellationToken cancellationToken)
    {
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
        if (!TryReadPid(layout, out var pid) || !Native.ProcessStat.IsRunning(pid))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        var clock = Stopwatch.StartNew();
        long imageBytes = 0;
        // The Sentry exits at the checkpoint: that is not the agent dying on its own.
        _exits.Forget(sandboxId);
        if (keepMemory)
        {
            DeleteDirectory(layout.PartialCheckpointDirectory);
            DeleteDirectory(layout.CheckpointDirectory);
            Directory.CreateDirectory(layout.PartialCheckpointDirectory);
            try
            {
                // Thawed first: the idle freezer's frozen cgroup would hold the checkpoint's own work still.
                _cgroups.Thaw(sandboxId);
                await _runsc.CheckpointAsync(sandboxId, layout.PartialCheckpointDirectory, cancellationToken);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or TimeoutException)
            {
                DeleteDirectory(layout.PartialCheckpointDirectory);
                if (Native.ProcessStat.IsRunning(pid))
                {
                    _exits.Watch(sandboxId, pid);
                }
                else
                {
                    // It stopped without a complete image: nothing to resume, so nothing of it is kept.
                    OnAgentExited?.Invoke(sandboxId);
                }
                throw;
            }
            imageBytes = DirectoryBytes(layout.PartialCheckpointDirectory);
            Files.SyncTree(layout.PartialCheckpointDirectory);
            Directory.Move(layout.PartialCheckpointDirectory, layout.CheckpointDirectory);
        }
        else
        {
            await _cgroups.KillAllAsync(sandboxId, cancellationToken);
        }
        // From here the sandbox is paused, whatever happens to the rest: a crash leaves it for SettleAsync.
        new PauseMarker(keepMemory, DateTimeOffset.UtcNow).Write(layout);
        using (var settle = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            await SettleAsync(layout, settle.Token);
        }
        RuntimeLog.SandboxPaused(_logger, sandboxId, keepMemory, clock.ElapsedMilliseconds, imageBytes);
    }

    /// <summary>
    /// From the memory image with <c>runsc restore</c> when the pause kept one and <paramref name="keepMemory"/> asks
    /// for it, else <c>runsc run</c> of the same bundle (a fresh boot on the kept files); in both cases the mounts,
    /// namespace and link come back first, the link with its recorded address (the restored netstack still has it).
    /// The image is removed once the agent answers, whichever way it booted.
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
        var fromMemory = marker.Memory && keepMemory;
        var clock = Stopwatch.StartNew();
        try
        {
            await SettleAsync(layout, cancellationToken);
            await _bundle.Value.WaitAsync(cancellationToken);
            await _mountNamespace.Value.WaitAsync(cancellationToken);
            SandboxFilesystem.Remount(layout, _logger);
            _netns.Create(layout.NetnsFile);
            await _network.ReattachAsync(sandboxId, layout.NetnsFile, cancellationToken);
            File.Delete(layout.PidFile);
            var output = _logs.Open(layout);
            var restoreStart = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var ok = fromMemory
                ? await _runsc.RestoreDetachedAsync(sandboxId, layout.Directory, layout.CheckpointDirectory, layout.PidFile, output, cancellationToken)
                : await _runsc.RunDetachedAsync(sandboxId, layout.Directory, layout.PidFile, output, cancellationToken);
            if (!ok)
            {
                throw new SandboxStartException(sandboxId, $"runsc {(fromMemory ? "restore" : "run")} failed: " + LogTail(layout));
            }
            if (!TryReadPid(layout, out var pid))
            {
                throw new SandboxStartException(sandboxId, "runsc wrote no pid file");
            }
            await WaitForAgentAsync(layout, pid, fromMemory ? restoreStart : null, cancellationToken);
            // Running again: the marker goes first, so that a crash from here leaves a running sandbox, never a paused one
            // whose image is half deleted.
            PauseMarker.Remove(layout);
            DeleteDirectory(layout.CheckpointDirectory);
            _exits.Watch(sandboxId, pid);
            RuntimeLog.SandboxResumed(_logger, sandboxId, fromMemory, clock.ElapsedMilliseconds);
            var metadata = SandboxMetadata.TryRead(layout.MetadataFile);
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

    /// <summary>
    /// Waits until the agent of the sandbox whose Sentry is <paramref name="pid"/> answers; after a <c>runsc restore</c>
    /// begun at <paramref name="restoreStart"/> (Unix milliseconds), tells the agent first and counts only an answer
    /// from sockets bound after it (<see cref="TellAgentItWasRestoredAsync"/>). A fresh start, a boot and each restore
    /// (a memory resume, a fork copy, a memory snapshot's sandbox) wait here.
    /// </summary>
    private async Task WaitForAgentAsync(SandboxLayout layout, int pid, long? restoreStart, CancellationToken cancellationToken)
    {
        var id = layout.SandboxId;
        var listeningAfter = restoreStart is { } start ? await TellAgentItWasRestoredAsync(id, start, cancellationToken) : null;
        await AgentReadiness.WaitAsync(id, pid, ct => ProbeAsync(id, ct), _options.StartTimeout, () => LogTail(layout), cancellationToken, listeningAfter);
    }

    /// <summary>
    /// Sends the restored agent SIGUSR2, on which it binds its TCP listening sockets again, and returns the instant
    /// (Unix milliseconds) that the readiness wait must see them bound after: <paramref name="restoreStart"/>, taken
    /// before <c>runsc restore</c>, minus <see cref="ClockSlack"/>. Why: this runsc loses, in a restore, the epoll
    /// registrations made before the checkpoint (gVisor issue 13920, fixed upstream after the 2024-07-29 build that
    /// Debian ships); the agent's listening socket then completed handshakes that its accept loop never heard of (about
    /// half of the SDK's pause cases here), or took one connection and then went deaf (the pause bench). A fresh socket
    /// registers anew. The wait for sockets bound after the restore keeps every request, the readiness probe's included,
    /// off the old socket and out of the gap between its close and the new bind. Null (wait for any answer) when the
    /// signal could not be sent: logged, and the readiness wait decides.
    /// </summary>
    private async Task<long?> TellAgentItWasRestoredAsync(string sandboxId, long restoreStart, CancellationToken cancellationToken)
    {
        if (await _runsc.SignalAsync(sandboxId, "USR2", cancellationToken))
        {
            return restoreStart - (long)ClockSlack.TotalMilliseconds;
        }
        RuntimeLog.RestoreSignalFailed(_logger, sandboxId);
        return null;
    }

    /// <summary>
    /// How far the Sentry's wall clock may trail the host's without a restored agent's new bind being taken for an old
    /// one. The restored Sentry reads the host's clock; an old socket was bound before the checkpoint, which ends at
    /// least the pause's settling (hundreds of milliseconds) before a restore starts.
    /// </summary>
    private static readonly TimeSpan ClockSlack = TimeSpan.FromMilliseconds(100);

    /// <summary>Rewrites the bundle's agent token and variables (<see cref="AgentLaunch.RewriteIdentity"/>), which a filesystem-only resume boots.</summary>
    public Task KeepIdentityAsync(string sandboxId, IReadOnlyDictionary<string, string> envVars, string? accessToken, CancellationToken cancellationToken) =>
        AgentLaunch.KeepIdentityAsync(_options, _locks, sandboxId, envVars, accessToken, cancellationToken);

    public Task<IReadOnlyList<PausedSandbox>> ListPausedAsync(CancellationToken cancellationToken) =>
        Task.FromResult(LeftoverSweep.PausedIn(_options));

    /// <summary>
    /// Releases every host resource of a paused sandbox but its directory (writable layer, disk image, metadata, config,
    /// memory image) and its link record: host processes (an interrupted resume's too), runsc's state, cgroups, the
    /// link's interface and rules, the network namespace, the mounts. Each step accepts that its piece is gone.
    /// </summary>
    private async Task SettleAsync(SandboxLayout layout, CancellationToken cancellationToken)
    {
        var id = layout.SandboxId;
        _exits.Forget(id);
        _usage.Forget(id);
        _logs.Close(id);
        _cgroups.Thaw(id);
        await _cgroups.RemoveAsync(id, cancellationToken);
        await _runsc.DeleteAsync(id, cancellationToken);
        // runsc delete of an id it no longer knows still takes (makes) its lock file and leaves it: seen after a daemon
        // stop, where that file kept the tier's state directory from being released.
        foreach (var lockFile in Directory.Exists(_options.RunscRoot) ? Directory.EnumerateFiles(_options.RunscRoot, id + "_sandbox:*.lock") : [])
        {
            if (!Directory.EnumerateFiles(_options.RunscRoot, id + "_sandbox:*.state").Any())
            {
                File.Delete(lockFile);
            }
        }
        await _cgroups.RemoveAsync(id, cancellationToken);
        await _network.SuspendAsync(id, cancellationToken);
        NetworkNamespaces.Release(layout.NetnsFile);
        await SandboxFilesystem.UnmountAllAsync(layout, _logger, cancellationToken);
    }

    private async ValueTask<Stream?> ProbeAsync(string sandboxId, CancellationToken token)
    {
        using var attempt = CancellationTokenSource.CreateLinkedTokenSource(token);
        attempt.CancelAfter(ProbeConnectTimeout);
        try
        {
            return await TryConnectAsync(sandboxId, AgentBundle.AgentPort, attempt.Token);
        }
        catch (OperationCanceledException) when (!token.IsCancellationRequested)
        {
            return null; // no answer to the SYN yet (netstack not up): not listening yet, as a refusal
        }
    }

    private static bool TryReadPid(SandboxLayout layout, out int pid)
    {
        pid = 0;
        try
        {
            return int.TryParse(File.ReadAllText(layout.PidFile).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out pid) && pid > 0;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static void DeleteDirectory(string path)
    {
        if (Directory.Exists(path))
        {
            Directory.Delete(path, recursive: true);
        }
    }

    private static long DirectoryBytes(string path) =>
        Files.Beneath(path, filesOnly: true).Sum(file => new FileInfo(file).Length);

    public async Task UpdateNetworkAsync(string sandboxId, EgressPolicy policy, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        using var held = await _locks.AcquireAsync(sandboxId, cancellationToken);
        await _network.UpdateAsync(sandboxId, policy, cancellationToken);
    }

    public Task SetCpuPriorityAsync(string sandboxId, bool background, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        _cgroups.SetCpuWeight(sandboxId, background);
        return Task.CompletedTask;
    }

    /// <summary>
    /// SIGKILLs the sandbox's host processes (the Sentry, whose tasks all the sandbox's processes are, the gofer and
    /// the stubs) until none is left; <see cref="DestroyAsync"/> removes the rest.
    /// </summary>
    public async Task<bool> KillProcessesAsync(string sandboxId, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            return true;
        }
        using var held = await _locks.AcquireAsync(sandboxId, cancellationToken);
        _exits.Forget(sandboxId);
        await _cgroups.KillAllAsync(sandboxId, cancellationToken);
        return true;
    }

    /// <summary>The cgroup freezer over the Sentry, the gofer and the stubs: a frozen Sentry runs no task of the sandbox.</summary>
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
    /// Asks the Sentry (<c>runsc ps</c>): the sandbox's processes are its tasks, not host processes, so the host's
    /// cgroups cannot tell the agent from a user's command. The agent is the container's init, pid 1, so the sandbox
    /// holds nothing else exactly when the list is [1]. One Go process per check (measured: 40 ms, 30 ms of CPU),
    /// which the idle freezer makes only for a sandbox idle past its time, against the 47 ms of CPU a second an idle
    /// gVisor sandbox burns awake (systrap) and none frozen. False when runsc cannot answer (the sandbox is gone).
    /// </summary>
    public async ValueTask<bool> IsOnlyAgentRunningAsync(string sandboxId, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            return false;
        }
        try
        {
            return await _runsc.ProcessIdsAsync(sandboxId, cancellationToken) is [1];
        }
        catch (Exception ex) when (ex is IOException or TimeoutException or System.Text.Json.JsonException)
        {
            return false;
        }
    }

    private int _disposed;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _network.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _disks.Dispose();
        _netns.Dispose();
        _exits.Dispose();
        _logs.Dispose();
        _cgroups.RemoveParentIfEmpty();
        RemoveStateIfUnused();
    }

    /// <summary>
    /// A daemon that stops with no gVisor sandbox left takes the tier's mounts (the namespace file, the state and shared
    /// binds) and its state directory with it: the next daemon makes them again at its first gVisor start, and a daemon
    /// that never runs one never does (the tier is deferred, <see cref="SandboxTier.Deferred"/>). With sandboxes left,
    /// all of it stays for the next daemon to re-adopt them.
    /// </summary>
    private void RemoveStateIfUnused()
    {
        static bool Empty(string dir) => !Directory.Exists(dir) || !Directory.EnumerateFileSystemEntries(dir).Any();
        if (!_options.ReleaseStateWhenUnused || !Empty(_options.SandboxesDirectory) || !Empty(_options.RunscRoot))
        {
            return;
        }
        try
        {
            GvisorMountNamespace.Remove(_options);
            var state = _options.StateDirectory.TrimEnd('/') + "/";
            // Never delete through a mount: only when nothing is mounted below the directory any more.
            if (!MountTable.Read().Any(m => (m.MountPoint + "/").StartsWith(state, StringComparison.Ordinal)))
            {
                Directory.Delete(_options.StateDirectory, recursive: true);
            }
        }
        catch (IOException ex)
        {
            RuntimeLog.TierStateRemovalFailed(_logger, TierName, _options.StateDirectory, ex);
        }
    }
}
