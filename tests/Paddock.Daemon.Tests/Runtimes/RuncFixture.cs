using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Tests.Runtimes;

[CollectionDefinition(Name)]
public sealed class RuncCollection : ICollectionFixture<RuncFixture>
{
    // Sandbox tests count host resources before and after, so they never run in parallel with each other.
    public const string Name = "runc";
}

/// <summary>
/// A real <see cref="RuncRuntime"/> over a state directory (TestEnvironment.StateRoot/runs/PID) and a cgroup parent
/// (paddock-test-PID) of this test process alone: test runs of several worktrees share the machine, and a runtime
/// cleans up everything it finds in its state, so two processes must never share one. What the tests count is this
/// process's alone. With the agent bundle and the templates prepared. At start it removes the runs of test
/// processes that are gone (aborted runs), at end its own.
/// </summary>
public sealed class RuncFixture : IAsyncLifetime
{
    private static readonly string RunsDirectory = Path.Combine(TestEnvironment.StateRoot, "runs");

    internal RuncOptions Options { get; } = OptionsFor(Environment.ProcessId);

    internal RuncRuntime Runtime { get; private set; } = null!;

    internal TemplateInfo Base { get; private set; } = null!;

    internal TemplateInfo Busybox { get; private set; } = null!;

    internal string AgentBinary { get; private set; } = null!;

    private static RuncOptions OptionsFor(int pid) => new()
    {
        StateDirectory = Path.Combine(RunsDirectory, pid.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        CgroupParent = $"paddock-test-{pid}",
        StartTimeout = TimeSpan.FromSeconds(30),
        Runtime = TestRuntime,
    };

    /// <summary>
    /// The OCI runtime under test: PADDOCK_Runc__Runtime (runc, crun or auto, as the daemon reads it), so that one
    /// variable runs these suites and the daemon-process suites on crun; auto when unset.
    /// </summary>
    internal static OciRuntimeKind TestRuntime =>
        Environment.GetEnvironmentVariable("PADDOCK_Runc__Runtime") is { Length: > 0 } r ? Enum.Parse<OciRuntimeKind>(r, ignoreCase: true) : OciRuntimeKind.Auto;

    public async Task InitializeAsync()
    {
        TestEnvironment.RequireRootAndRunc();
        AgentBinary = await TestEnvironment.AgentBinaryAsync();
        await RemoveRunsOfDeadProcessesAsync();
        Runtime = NewRuntime();
        Busybox = await TestEnvironment.BusyboxTemplateAsync();
        Base = await TestEnvironment.BaseTemplateAsync();
    }

    /// <summary>Another runtime instance over the same state, as a restarted daemon would create.</summary>
    internal RuncRuntime NewRuntime() => NewRuntime(Options);

    /// <summary>A runtime over <paramref name="options"/> (a test class's own, from <see cref="OwnOptions"/>) with the prepared agent.</summary>
    internal RuncRuntime NewRuntime(RuncOptions options) => new(options, AgentBinary, NullLogger<RuncRuntime>.Instance);

    /// <summary>
    /// Options with a state directory (under the test state root) and a cgroup parent of a test class's own, so that
    /// the host counts of the other tests, which use <see cref="Options"/>, are not disturbed.
    /// </summary>
    internal static RuncOptions OwnOptions(string stateDirectory, string cgroupParent) => new()
    {
        StateDirectory = Path.Combine(TestEnvironment.StateRoot, stateDirectory),
        CgroupParent = cgroupParent,
        StartTimeout = TimeSpan.FromSeconds(30),
        Runtime = TestRuntime,
    };

    internal SandboxSpec Spec(TemplateInfo template, ResourceLimits? limits = null, string? token = null) => new()
    {
        SandboxId = "t-" + Guid.NewGuid().ToString("N")[..12],
        TemplateLayers = [template.RootfsPath],
        DefaultUser = template.DefaultUser,
        Limits = limits ?? new ResourceLimits(CpuCount: 1, MemoryBytes: 512L << 20, MaxPids: 256, DiskBytes: 1L << 30),
        AgentAccessToken = token,
    };

    /// <summary>Starts a sandbox that is destroyed when the returned lease is disposed, whatever the test did.</summary>
    internal async Task<SandboxLease> StartAsync(SandboxSpec spec)
    {
        var sandbox = await Runtime.StartAsync(spec, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        return new SandboxLease(this, sandbox);
    }

    /// <summary>What of the tier's sandboxes exists on the host now (all of it scoped to this fixture's state and cgroup).</summary>
    internal HostFootprint Footprint() => HostFootprint.Take(Options);

    public async Task DisposeAsync()
    {
        if (Runtime is null)
        {
            return;
        }
        await RemoveRunAsync(Runtime, Options);
    }

    /// <summary>
    /// Destroys every sandbox the runtime lists and whatever its leftover sweep finds (a test's cleanup, also after a
    /// failure), within 2 minutes.
    /// </summary>
    internal static async Task DestroyAllAsync(RuncRuntime runtime)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        foreach (var s in await runtime.ListAsync(timeout.Token))
        {
            await runtime.DestroyAsync(s.SandboxId, timeout.Token);
        }
        // The leftover sweep keeps paused sandboxes (their marker says so): a test's are destroyed here.
        foreach (var p in await runtime.ListPausedAsync(timeout.Token))
        {
            await runtime.DestroyAsync(p.SandboxId, timeout.Token);
        }
        await runtime.CleanupLeftoversAsync(timeout.Token);
    }

    /// <summary>Destroys every sandbox of a run, then its state directory and cgroup parents.</summary>
    private static async Task RemoveRunAsync(RuncRuntime runtime, RuncOptions options)
    {
        await DestroyAllAsync(runtime);
        runtime.Dispose();
        if (MountTable.Under(options.StateDirectory).Count == 0 && Directory.Exists(options.StateDirectory))
        {
            Directory.Delete(options.StateDirectory, recursive: true);
        }
        foreach (var m in MountTable.Read().Where(m => m.FsType is "cgroup" or "cgroup2"))
        {
            var parent = Path.Combine(m.MountPoint, options.CgroupParent);
            if (Directory.Exists(parent) && !Directory.EnumerateDirectories(parent).Any())
            {
                Directory.Delete(parent); // rmdir of an empty cgroup
            }
        }
    }

    /// <summary>Runs left by test processes that no longer exist (a run aborted before its cleanup).</summary>
    private async Task RemoveRunsOfDeadProcessesAsync()
    {
        if (!Directory.Exists(RunsDirectory))
        {
            return;
        }
        foreach (var dir in Directory.EnumerateDirectories(RunsDirectory))
        {
            if (int.TryParse(Path.GetFileName(dir), out var pid) && pid != Environment.ProcessId && !IsTestProcess(pid))
            {
                var options = OptionsFor(pid);
                await RemoveRunAsync(new RuncRuntime(options, AgentBinary, NullLogger<RuncRuntime>.Instance), options);
            }
        }
    }

    private static bool IsTestProcess(int pid)
    {
        try
        {
            var cmdline = File.ReadAllText($"/proc/{pid}/cmdline");
            return cmdline.Contains("testhost", StringComparison.Ordinal) || cmdline.Contains("dotnet", StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }
}

internal sealed class SandboxLease : IAsyncDisposable
{
    private readonly RuncFixture _fixture;

    public SandboxLease(RuncFixture fixture, RuntimeSandbox sandbox)
    {
        _fixture = fixture;
        Sandbox = sandbox;
    }

    public RuntimeSandbox Sandbox { get; }

    public string Id => Sandbox.SandboxId;

    public SandboxLayout Layout => new(_fixture.Options, Id);

    public Task<CommandOutput> RunAsync(string command, string? user = null, TimeSpan? timeout = null) =>
        AgentCalls.RunAsync(_fixture.Runtime, Id, "/bin/sh", ["-c", command], user, timeout ?? TimeSpan.FromSeconds(60));

    public async ValueTask DisposeAsync() =>
        await _fixture.Runtime.DestroyAsync(Id, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
}

/// <summary>Host resources of the runc tier under the fixture's state directory and cgroup parent.</summary>
internal sealed record HostFootprint(int Mounts, int NetnsFiles, int SandboxDirectories, int CgroupDirectories, int Processes)
{
    public static HostFootprint Take(RuncOptions options)
    {
        // The disks made ahead (DiskStock) are the runtime's, not a sandbox's, and come and go in the background.
        var mounts = MountTable.Read().Count(m => m.MountPoint.StartsWith(options.StateDirectory + "/", StringComparison.Ordinal)
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
                    processes += Cgroups.Pids(dir).Count;
                }
            }
        }
        return new HostFootprint(
            mounts,
            Count(options.NetnsDirectory, directories: false),
            Count(options.SandboxesDirectory, directories: true),
            cgroupDirs,
            processes);
    }

    private static int Count(string dir, bool directories) =>
        !Directory.Exists(dir) ? 0 : (directories ? Directory.EnumerateDirectories(dir) : Directory.EnumerateFiles(dir)).Count();
}
