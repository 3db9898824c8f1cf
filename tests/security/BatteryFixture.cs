using System.Globalization;
using System.Security.Cryptography;

namespace Paddock.Security.Tests;

[CollectionDefinition(Name)]
public sealed class BatteryCollection : ICollectionFixture<BatteryFixture>
{
    // One daemon for the whole battery; the classes never run in parallel, so what one counts on the host is its own.
    public const string Name = "battery";
}

/// <summary>
/// One paddockd with two sandboxes: the attacker, from inside which the attacks run, and its neighbour, which holds a
/// file and a listening port that must stay untouched. And a snapshot of the host taken before any attack: a canary
/// file, host /proc/sys values, the kernel's module list, the runc and agent binaries, so that every case can check
/// that nothing of it changed.
/// </summary>
public sealed class BatteryFixture : IAsyncLifetime
{
    public const string NeighbourFile = "/home/user/neighbour.txt";
    public const string NeighbourContent = "bytes of the neighbour";
    public const int NeighbourPort = 8123;

    /// <summary>The gVisor tier's bound on a sandbox's agent.log, set for the battery's daemon (AgentLogTests).</summary>
    public const long AgentLogBound = 1L << 20;

    /// <summary>Host /proc/sys values an escape would want to change (core_pattern is the classic one).</summary>
    private static readonly string[] HostSysctls =
    [
        "kernel/core_pattern", "kernel/hostname", "kernel/domainname", "kernel/panic", "kernel/sysrq",
        "kernel/modprobe", "kernel/randomize_va_space", "kernel/pid_max", "vm/overcommit_memory", "fs/file-max",
        "net/ipv4/ip_forward", "kernel/kptr_restrict", "kernel/dmesg_restrict", "kernel/perf_event_paranoid",
    ];

    private Dictionary<string, string> _hostBefore = new(StringComparer.Ordinal);

    internal PaddockdProcess Daemon { get; private set; } = null!;

    internal HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(120) };

    internal TestSandbox Attacker { get; private set; } = null!;

    internal TestSandbox Neighbour { get; private set; } = null!;

    /// <summary>A file on the host that no sandbox may read or change; its directory name is distinctive.</summary>
    internal string CanaryDirectory { get; } = Path.Combine(Path.GetTempPath(), "paddock-canary-" + Guid.NewGuid().ToString("N")[..12]);

    internal string CanaryFile => Path.Combine(CanaryDirectory, "canary.txt");

    internal const string CanaryContent = "host only";

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(CanaryDirectory);
        await File.WriteAllTextAsync(CanaryFile, CanaryContent);
        _hostBefore = HostSnapshot();
        Daemon = await PaddockdProcess.StartAsync(environment: new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["PADDOCK_Gvisor__AgentLogBytes"] = AgentLogBound.ToString(CultureInfo.InvariantCulture),
        });
        Attacker = await TestSandbox.CreateAsync(Daemon, Http);
        Neighbour = await TestSandbox.CreateAsync(Daemon, Http);
        var setup = await Neighbour.RunAsync(
            $"printf '%s' '{NeighbourContent}' > {NeighbourFile} && " +
            $"(setsid nohup python3 -m http.server {NeighbourPort} --bind 127.0.0.1 >/dev/null 2>&1 &) && " +
            $"for i in $(seq 1 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {NeighbourPort}), 1)' 2>/dev/null && echo up && break; sleep 0.1; done");
        Assert.True(setup.Stdout.Contains("up", StringComparison.Ordinal), "the neighbour's server did not start: " + setup);
    }

    /// <summary>
    /// Fails unless the host and the neighbour are as they were: the canary, the host's /proc/sys values and module
    /// list, the runc and agent binaries, no process with a sandbox uid in the host's pid namespace, the neighbour's
    /// file and server, and the daemon alive.
    /// </summary>
    internal async Task AssertHostUnchangedAsync()
    {
        Assert.True(Daemon.IsAlive, "paddockd died: " + Daemon.Log);
        var now = HostSnapshot();
        foreach (var (key, value) in _hostBefore)
        {
            Assert.True(now.TryGetValue(key, out var v) && v == value, $"host state {key} changed: '{value}' -> '{v}'");
        }
        // Seen again 2 s later: "runc init" of a sandbox being created (by any test run on the machine) passes
        // through the host's pid namespace for a moment; a process that escaped stays.
        var suspects = SandboxUidsInHostPidNamespace();
        if (suspects.Count > 0)
        {
            await Task.Delay(TimeSpan.FromSeconds(2));
            Assert.Empty(SandboxUidsInHostPidNamespace().Intersect(suspects, StringComparer.Ordinal));
        }
        var neighbour = await Neighbour.RunAsync(
            $"cat {NeighbourFile}; echo; python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {NeighbourPort}), 2); print(\"serving\")'");
        Assert.Equal($"{NeighbourContent}\nserving\n", neighbour.Stdout);
    }

    private Dictionary<string, string> HostSnapshot()
    {
        var snapshot = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["canary"] = File.Exists(CanaryFile) ? File.ReadAllText(CanaryFile) + "@" + File.GetLastWriteTimeUtc(CanaryFile).Ticks : "missing",
            ["canary-dir"] = Directory.Exists(CanaryDirectory) ? string.Join(',', Directory.EnumerateFileSystemEntries(CanaryDirectory).Order(StringComparer.Ordinal)) : "missing",
            // No module loading on some kernels (this VM's): then the file is absent, and must stay so.
            ["modules"] = File.Exists("/proc/modules") ? Hash(File.ReadAllBytes("/proc/modules")) : "absent",
        };
        foreach (var sysctl in HostSysctls)
        {
            var path = "/proc/sys/" + sysctl;
            snapshot["sysctl " + sysctl] = File.Exists(path) ? File.ReadAllText(path).Trim() : "absent";
        }
        foreach (var binary in (string[])["/usr/sbin/runc", "/usr/bin/runc", "/usr/bin/crun", Environment.GetEnvironmentVariable("PADDOCK_AGENT_BINARY") ?? ""])
        {
            if (binary.Length > 0 && File.Exists(binary))
            {
                snapshot["binary " + binary] = Hash(File.ReadAllBytes(binary));
            }
        }
        return snapshot;
    }

    /// <summary>
    /// Host processes running as a sandbox uid (the id mapping starts at 100000) while in the host's own pid
    /// namespace: a process that got out of its sandbox would be one. Sandboxes of other test runs are in their own
    /// namespaces, so they do not count.
    /// </summary>
    internal static List<string> SandboxUidsInHostPidNamespace()
    {
        var hostPidNs = new FileInfo("/proc/self/ns/pid").LinkTarget;
        var found = new List<string>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out _))
            {
                continue;
            }
            try
            {
                var uidLine = File.ReadLines(Path.Combine(dir, "status")).FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
                var uid = uidLine is null ? 0 : long.Parse(uidLine.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
                if (uid is >= 100000 and < 100000 + 65536 && new FileInfo(Path.Combine(dir, "ns/pid")).LinkTarget == hostPidNs
                    && !IsRunsc(dir))
                {
                    found.Add($"{Path.GetFileName(dir)} uid {uid}: {File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ')}");
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // the process went away while we looked
            }
        }
        return found;
    }

    /// <summary>
    /// The gVisor tier's own host processes: the Sentry, the gofer and the systrap stubs run as the sandbox's uid in
    /// the host's pid namespace, all of them runsc (measured: every uid-100000 host process of a gVisor sandbox had
    /// /proc/PID/exe = the runsc binary). The sandbox's own processes are Sentry tasks, never host processes; one that
    /// got out of the Sentry would run another executable. Other test runs' gVisor sandboxes on the machine are
    /// these too, so they are left out on both tiers.
    /// </summary>
    private static bool IsRunsc(string procDir)
    {
        var runsc = Environment.GetEnvironmentVariable("PADDOCK_Gvisor__RunscBinary") is { Length: > 0 } configured ? configured : "/usr/local/lib/paddock/runsc";
        try
        {
            return new FileInfo(Path.Combine(procDir, "exe")).LinkTarget == runsc;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static string Hash(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    public async Task DisposeAsync()
    {
        try
        {
            if (Attacker is not null)
            {
                await Attacker.DisposeAsync();
            }
            if (Neighbour is not null)
            {
                await Neighbour.DisposeAsync();
            }
        }
        finally
        {
            if (Daemon is not null)
            {
                await Daemon.DisposeAsync();
            }
            Http.Dispose();
            Directory.Delete(CanaryDirectory, recursive: true);
        }
    }
}
