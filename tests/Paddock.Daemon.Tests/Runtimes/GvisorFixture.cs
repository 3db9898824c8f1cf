using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Gvisor;
using Paddock.Daemon.Templates;
using Paddock.Daemon.Tests.Network;

namespace Paddock.Daemon.Tests.Runtimes;

[CollectionDefinition(Name)]
public sealed class GvisorCollection : ICollectionFixture<GvisorFixture>
{
    // Tests count host resources before and after, so they never run in parallel with each other.
    public const string Name = "gvisor";
}

/// <summary>
/// A fact that runs only where runsc (the 2024 build) is installed, and otherwise says why it was skipped. CI
/// installs runsc (scripts/setup runs scripts/install-runsc), so there these always run.
/// </summary>
public sealed class GvisorFactAttribute : FactAttribute
{
    public GvisorFactAttribute()
    {
        if (GvisorFixture.Availability.Reason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>
/// A real <see cref="GvisorRuntime"/> over a state directory (StateRoot/gvisor-runs/PID), a cgroup parent, an
/// nftables table, an interface prefix and an address pool of this test process alone, with the agent and the
/// templates the runc tests use, and an <see cref="OutsideHost"/> for egress. It removes its own run at the end
/// (sandboxes, the tier's mount namespace and state mounts, the table, the cgroup parents, the directory).
/// </summary>
public sealed class GvisorFixture : IAsyncLifetime
{
    private static readonly int Pid = Environment.ProcessId;

    internal static GvisorAvailability Availability { get; } = GvisorProbe.Probe(new GvisorOptions());

    internal GvisorOptions Options { get; } = new()
    {
        StateDirectory = Path.Combine(TestEnvironment.StateRoot, "gvisor-runs", Pid.ToString(CultureInfo.InvariantCulture)),
        CgroupParent = $"paddock-gvisor-test-{Pid}",
        // Several instances share this state (restart simulations); DisposeAsync removes the run at the end.
        ReleaseStateWhenUnused = false,
        StartTimeout = TimeSpan.FromSeconds(60),
        Network = new NetworkOptions
        {
            Pool = $"10.206.{Pid % 250 + 1}.0/24",
            TableName = $"paddock_gvisor_test_{Pid}",
            InterfacePrefix = $"pg{Pid % 1_000_000}s",
        },
    };

    internal GvisorRuntime Runtime { get; private set; } = null!;

    internal TemplateInfo Base { get; private set; } = null!;

    internal TemplateInfo Busybox { get; private set; } = null!;

    internal string AgentBinary { get; private set; } = null!;

    private OutsideHost? _outside;

    /// <summary>An "outside" host in a namespace of the test's own, made on first use.</summary>
    internal async Task<OutsideHost> OutsideAsync() => _outside ??= await OutsideHost.CreateAsync((Pid + 100) % 250 + 1, "g");

    public async Task InitializeAsync()
    {
        if (!Availability.IsAvailable)
        {
            return; // every test is skipped with the probe's reason
        }
        TestEnvironment.RequireRootAndRunc();
        AgentBinary = await TestEnvironment.AgentBinaryAsync();
        Runtime = NewRuntime();
        Busybox = await TestEnvironment.BusyboxTemplateAsync();
        Base = await TestEnvironment.BaseTemplateAsync();
    }

    /// <summary>Another runtime instance over the same state, as a restarted daemon would create.</summary>
    internal GvisorRuntime NewRuntime() => new(Options, AgentBinary, NullLogger<GvisorRuntime>.Instance, Connections);

    /// <summary>What the runtimes' connection observers saw (Networking/ConnectionObserver), in order.</summary>
    internal CollectedConnections Connections { get; } = new();

    internal SandboxSpec Spec(TemplateInfo template, ResourceLimits? limits = null, EgressPolicy? egress = null) => new()
    {
        SandboxId = "g-" + Guid.NewGuid().ToString("N")[..12],
        TemplateLayers = [template.RootfsPath],
        DefaultUser = template.DefaultUser,
        Limits = limits ?? new ResourceLimits(CpuCount: 1, MemoryBytes: 512L << 20, MaxPids: 256, DiskBytes: 1L << 30),
        Egress = egress,
    };

    /// <summary>Starts a sandbox that is destroyed when the returned lease is disposed, whatever the test did.</summary>
    internal async Task<GvisorLease> StartAsync(SandboxSpec spec)
    {
        var sandbox = await Runtime.StartAsync(spec, TestEnvironment.Timeout(TimeSpan.FromSeconds(90)));
        return new GvisorLease(Runtime, sandbox);
    }

    /// <summary>What of the tier's sandboxes exists on the host now: mounts, namespace files, directories, cgroups, processes, links.</summary>
    internal GvisorFootprint Footprint() => GvisorFootprint.Take(Options);

    /// <summary>
    /// Destroys every running sandbox of the shared runtime (a test class's cleanup; bounded: 2 minutes). Nothing
    /// without gVisor, where the fixture made no runtime.
    /// </summary>
    internal async Task DestroyRunningAsync()
    {
        if (Runtime is null)
        {
            return;
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        foreach (var s in await Runtime.ListAsync(timeout.Token))
        {
            await Runtime.DestroyAsync(s.SandboxId, timeout.Token);
        }
    }

    public async Task DisposeAsync()
    {
        if (_outside is not null)
        {
            await _outside.DisposeAsync();
        }
        if (Runtime is null)
        {
            return;
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        foreach (var s in await Runtime.ListAsync(timeout.Token))
        {
            await Runtime.DestroyAsync(s.SandboxId, timeout.Token);
        }
        await Runtime.CleanupLeftoversAsync(timeout.Token);
        Runtime.Dispose();
        await Runtime.Disks.IdleAsync();
        foreach (var mount in MountTable.Under(Options.DiskStockDirectory))
        {
            Mounts.Unmount(mount, Mounts.MNT_DETACH);
        }
        GvisorMountNamespace.Remove(Options);
        if (MountTable.Under(Options.StateDirectory).Count == 0 && Directory.Exists(Options.StateDirectory))
        {
            Directory.Delete(Options.StateDirectory, recursive: true);
        }
        foreach (var m in MountTable.Read().Where(m => m.FsType is "cgroup" or "cgroup2"))
        {
            var parent = Path.Combine(m.MountPoint, Options.CgroupParent);
            if (Directory.Exists(parent) && !Directory.EnumerateDirectories(parent).Any())
            {
                Directory.Delete(parent);
            }
        }
    }
}

internal sealed class GvisorLease(GvisorRuntime runtime, RuntimeSandbox sandbox) : IAsyncDisposable
{
    public RuntimeSandbox Sandbox { get; } = sandbox;

    public GvisorRuntime Runtime => runtime;

    public string Id => Sandbox.SandboxId;

    public Task<CommandOutput> RunAsync(string command, string? user = null, TimeSpan? timeout = null) =>
        AgentCalls.RunAsync(runtime, Id, "/bin/sh", ["-c", command], user, timeout ?? TimeSpan.FromSeconds(60));

    public async ValueTask DisposeAsync() =>
        await runtime.DestroyAsync(Id, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
}

/// <summary>Host resources of the gVisor tier under the fixture's state directory, cgroup parent and interface prefix.</summary>
internal sealed record GvisorFootprint(int Mounts, int NetnsFiles, int SandboxDirectories, int CgroupDirectories, int Processes, int Links, int RunscStates)
{
    public static GvisorFootprint Take(GvisorOptions options)
    {
        // The tier's own mounts (state, shared, mntns) and the disks made ahead come and go apart from sandboxes.
        var mounts = MountTable.Read().Count(m => m.MountPoint.StartsWith(options.SharedDirectory + "/", StringComparison.Ordinal)
            && !m.MountPoint.StartsWith(options.DiskStockDirectory + "/", StringComparison.Ordinal));
        var cgroupDirs = 0;
        var processes = 0;
        foreach (var m in MountTable.Read().Where(m => m.FsType is "cgroup" or "cgroup2"))
        {
            var parent = Path.Combine(m.MountPoint, options.CgroupParent);
            if (Directory.Exists(parent))
            {
                foreach (var dir in Directory.EnumerateDirectories(parent))
                {
                    cgroupDirs++;
                    processes += Daemon.Runtimes.Host.Cgroups.Pids(dir).Count;
                }
            }
        }
        var links = Directory.EnumerateDirectories("/sys/class/net").Count(d => Path.GetFileName(d).StartsWith(options.Network.InterfacePrefix, StringComparison.Ordinal));
        return new GvisorFootprint(
            mounts,
            Count(options.NetnsDirectory, directories: false),
            Count(options.SandboxesDirectory, directories: true),
            cgroupDirs,
            processes,
            links,
            Directory.Exists(options.RunscRoot) ? Directory.EnumerateFileSystemEntries(options.RunscRoot).Count() : 0);
    }

    private static int Count(string dir, bool directories) =>
        !Directory.Exists(dir) ? 0 : (directories ? Directory.EnumerateDirectories(dir) : Directory.EnumerateFiles(dir)).Count();
}

/// <summary>An <see cref="IConnectionSink"/> that keeps every event, for tests to read.</summary>
internal sealed class CollectedConnections : IConnectionSink
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<ConnectionEvent> _events = new();

    public IReadOnlyList<ConnectionEvent> Of(string sandboxId) => _events.Where(e => e.SandboxId == sandboxId).ToList();

    public void Observed(ConnectionEvent connection) => _events.Enqueue(connection);
}
