using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Paddock.Bench.Native;

namespace Paddock.Bench.Daemon;

/// <summary>
/// A real paddockd started as a child of the bench: a free loopback port, a temporary state directory, a cgroup
/// parent of its own (so its sandboxes' memory can be summed without counting anyone else's), and an API key the
/// bench chose. <see cref="DisposeAsync"/> kills every sandbox it still runs, stops it by pid and removes the state.
/// </summary>
internal sealed class PaddockdProcess : IAsyncDisposable
{
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(30);

    private readonly Process _process;
    private readonly string _stateDir;
    private readonly TextWriter _log;
    private readonly Lock _outputLock = new();
    private readonly Queue<string> _output = new();

    private PaddockdProcess(Process process, string stateDir, Uri url, string apiKey, string cgroupParent, TextWriter log)
    {
        _process = process;
        _stateDir = stateDir;
        Url = url;
        ApiKey = apiKey;
        CgroupParent = cgroupParent;
        _log = log;
    }

    public Uri Url { get; }

    public string ApiKey { get; }

    /// <summary>The cgroup (relative to each hierarchy's root) under which this daemon's sandboxes get theirs.</summary>
    public string CgroupParent { get; }

    public int Pid => _process.Id;

    /// <summary>paddockd's state directory (its sandboxes' mounts, netns files and runc state are under it).</summary>
    public string StateDir => _stateDir;

    public bool IsRunning => !_process.HasExited;

    /// <summary>The last lines paddockd printed, for an error message.</summary>
    public string RecentOutput()
    {
        lock (_outputLock)
        {
            return string.Join('\n', _output);
        }
    }

    /// <summary>
    /// Starts paddockd and waits for its <c>/health</c>. With the template missing, paddockd builds it before it
    /// listens (minutes), hence the long <paramref name="readyTimeout"/>.
    /// </summary>
    public static async Task<PaddockdProcess> StartAsync(DaemonBenchOptions options, TimeSpan readyTimeout, TextWriter log, CancellationToken cancellationToken,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var port = FreePort();
        var stateDir = Directory.CreateTempSubdirectory("paddock-bench-daemon-").FullName;
        var apiKey = "e2b_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));
        var cgroupParent = $"paddock-bench-{Environment.ProcessId}";
        var start = new ProcessStartInfo(options.Binary)
        {
            ArgumentList =
            {
                "--listen", $"127.0.0.1:{port}",
                "--state-dir", stateDir,
                "--templates-dir", options.TemplatesDir,
                "--prepare-template", options.Template,
                // Room for the idle and fan-out figures (the default is 100 at once); pool sandboxes do not count.
                "--max-sandboxes", (Math.Max(options.IdleSandboxes, Math.Max(options.FanoutSandboxes, options.Clients)) + 20).ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--freeze-after", options.FreezeAfter.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (!options.Observe)
        {
            start.ArgumentList.Add("--metrics");
            start.ArgumentList.Add("off");
            start.ArgumentList.Add("--audit-max-events");
            start.ArgumentList.Add("0");
        }
        if (options.PoolSize > 0)
        {
            start.ArgumentList.Add("--pool");
            start.ArgumentList.Add($"{options.Template}={options.PoolSize}");
            start.ArgumentList.Add("--pool-refill");
            start.ArgumentList.Add(options.PoolRefill.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        start.Environment["PADDOCK_API_KEY"] = apiKey;
        start.Environment["PADDOCK_ISOLATION"] = options.Isolation;
        // The measured tier's sandboxes go under cgroupParent (the memory figure reads them there); the other tier gets a
        // parent of its own, since each tier's leftover sweep removes what it does not know under its parent.
        var gvisor = options.Isolation == "gvisor";
        start.Environment["PADDOCK_Runc__CgroupParent"] = gvisor ? cgroupParent + "-runc" : cgroupParent;
        start.Environment["PADDOCK_Gvisor__CgroupParent"] = gvisor ? cgroupParent : cgroupParent + "-gvisor";
        start.Environment["PADDOCK_Gvisor__Network__Pool"] = "10.209.0.0/16";
        // A daemon over a temporary state directory gets a /22 of sandbox links (510 sandboxes), which the idle
        // figure's 1,000 outgrow: the bench takes a /16 of its own, apart from the default daemon's 10.201.0.0/16
        // and the test daemons' 10.202.0.0/15.
        start.Environment["PADDOCK_Runc__Network__Pool"] = "10.200.0.0/16";
        // The tests' agent when given (as the tests give it), so that a soak needs no AOT publish of its own.
        if (Environment.GetEnvironmentVariable("PADDOCK_AGENT_BINARY") is { Length: > 0 } agent)
        {
            start.Environment["PADDOCK_Runc__AgentBinary"] = agent;
        }
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }
        var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {options.Binary}");
        var daemon = new PaddockdProcess(process, stateDir, new Uri($"http://127.0.0.1:{port}"), apiKey, cgroupParent, log);
        process.OutputDataReceived += (_, e) => daemon.Remember(e.Data);
        process.ErrorDataReceived += (_, e) => daemon.Remember(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await daemon.WaitReadyAsync(readyTimeout, cancellationToken);
            return daemon;
        }
        catch
        {
            await daemon.DisposeAsync();
            throw;
        }
    }

    private void Remember(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_outputLock)
        {
            _output.Enqueue(line);
            while (_output.Count > 200)
            {
                _output.Dequeue();
            }
        }
        // Template builds report progress; show them, since a first run waits minutes for one.
        if (line.Contains("Templates.TemplateStore[310", StringComparison.Ordinal))
        {
            _log.WriteLine($"  {line}");
        }
    }

    private async Task WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"paddockd exited with {_process.ExitCode} before it was ready:\n{RecentOutput()}");
            }
            try
            {
                using var response = await http.GetAsync(new Uri(Url, "/health"), cancellationToken);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // A 5 s request timeout: try again.
            }
            if (deadline.Elapsed > timeout)
            {
                throw new TimeoutException($"paddockd did not answer /health within {timeout.TotalSeconds:0} s:\n{RecentOutput()}");
            }
            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>The daemon's resident set (VmRSS) in bytes.</summary>
    public long ResidentBytes() => HostMemory.ResidentBytes(_process.Id);

    /// <summary>
    /// CPU time so far of the daemon with its reaped children (runc, mkfs, nft: utime + stime + cutime + cstime of
    /// /proc/PID/stat) and of every sandbox under its cgroup parent (cpuacct.usage, which a parent keeps for removed
    /// children), in milliseconds; <c>SelfMs</c>: the daemon's own part (utime + stime).
    /// </summary>
    public (double DaemonMs, double SelfMs, double SandboxesMs) CpuMilliseconds()
    {
        var stat = File.ReadAllText($"/proc/{_process.Id}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // After the state (field 3): utime, stime, cutime, cstime are fields 14-17, so 11-14 of what follows ')'.
        var ticks = Enumerable.Range(11, 4).Sum(i => long.Parse(fields[i], System.Globalization.CultureInfo.InvariantCulture));
        var selfTicks = Enumerable.Range(11, 2).Sum(i => long.Parse(fields[i], System.Globalization.CultureInfo.InvariantCulture));
        var usage = Path.Combine("/sys/fs/cgroup/cpuacct", CgroupParent, "cpuacct.usage");
        var sandboxNs = File.Exists(usage) ? long.Parse(File.ReadAllText(usage).Trim(), System.Globalization.CultureInfo.InvariantCulture) : 0;
        // USER_HZ is 100 on Linux.
        return (ticks * 10.0, selfTicks * 10.0, sandboxNs / 1e6);
    }

    /// <summary>
    /// Sandbox cgroups under this daemon's parent now: its live sandboxes plus its pool's, ready or starting. The
    /// empty cgroups of killed sandboxes whose teardown still runs in the background (no process left) do not count.
    /// </summary>
    public int SandboxCgroups()
    {
        var parent = Path.Combine(HostMemory.MemoryHierarchy, CgroupParent);
        return Directory.Exists(parent) ? Directory.EnumerateDirectories(parent).Count(HasProcesses) : 0;
    }

    private static bool HasProcesses(string cgroup)
    {
        try
        {
            return File.ReadAllText(Path.Combine(cgroup, "cgroup.procs")).Length > 0;
        }
        catch (IOException)
        {
            return false; // removed meanwhile
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                // Sandboxes outlive a stopped daemon: kill them through it first, bounded in count and time.
                using var client = new DaemonClient(Url, ApiKey);
                using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
                try
                {
                    for (var round = 0; round < 3; round++)
                    {
                        var ids = await client.ListAsync(timeout.Token);
                        if (ids.Count == 0)
                        {
                            break;
                        }
                        _log.WriteLine($"  cleaning up {ids.Count} sandbox(es)");
                        foreach (var id in ids)
                        {
                            await client.KillAsync(id, timeout.Token);
                        }
                    }
                }
                catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
                {
                    _log.WriteLine($"  cleanup through paddockd failed: {ex.Message}");
                }
                // A kill answers once the sandbox's processes are gone; its mounts and cgroups go in the background.
                // Stopping paddockd before they are gone would leave them (1,000 kills at once take minutes).
                await WaitForTeardownsAsync(TimeSpan.FromMinutes(10));
                Stop();
            }
        }
        finally
        {
            _process.Dispose();
            UnmountGvisorTierOwn();
            var mounted = MountPointsUnder(_stateDir).Count;
            if (mounted > 0)
            {
                // Never delete recursively through a mount: it would delete inside the sandboxes' filesystems.
                _log.WriteLine($"  not removing {_stateDir}: {mounted} mount(s) still under it (start paddockd over it to sweep them)");
            }
            else
            {
                try
                {
                    Directory.Delete(_stateDir, recursive: true);
                }
                catch (IOException ex)
                {
                    _log.WriteLine($"  could not remove {_stateDir}: {ex.Message}");
                }
            }
            RemoveCgroupParent();
        }
    }

    /// <summary>
    /// Waits (bounded) until no killed sandbox of this daemon has a cgroup left: a killed one's cgroup is empty until
    /// its teardown removes it, early in the teardown (the pool's members still run, and paddockd's stop destroys them
    /// and waits for what is left of the teardowns).
    /// </summary>
    private async Task WaitForTeardownsAsync(TimeSpan limit)
    {
        var parent = Path.Combine(HostMemory.MemoryHierarchy, CgroupParent);
        var waited = Stopwatch.StartNew();
        while (waited.Elapsed < limit && !_process.HasExited)
        {
            if (!Directory.Exists(parent) || !Directory.EnumerateDirectories(parent).Any(d => !HasProcesses(d)))
            {
                return;
            }
            await Task.Delay(200);
        }
        if (!_process.HasExited)
        {
            _log.WriteLine($"  the sandboxes' teardowns did not finish within {limit.TotalMinutes:0} min");
        }
    }

    /// <summary>
    /// The gVisor tier keeps three mounts of its own under the state directory for as long as the directory is in use
    /// (its mount namespace, bound to a file, and two binds it propagates through), so that a restarted paddockd finds
    /// its sandboxes' mounts again: paddockd never removes them. With every sandbox gone and nothing else mounted under
    /// the directory, they are the bench's to remove (innermost first), as the tests' fixtures do.
    /// </summary>
    private void UnmountGvisorTierOwn()
    {
        var tier = Path.Combine(_stateDir, "gvisor");
        string[] own = [Path.Combine(tier, "mntns"), Path.Combine(tier, "shared"), tier];
        var mounted = MountPointsUnder(_stateDir);
        if (mounted.Count == 0 || mounted.Any(m => !own.Contains(m, StringComparer.Ordinal)))
        {
            return;
        }
        foreach (var path in own.Where(mounted.Contains))
        {
            using var umount = Process.Start(new ProcessStartInfo("umount", ["--lazy", path]) { RedirectStandardError = true });
            umount?.WaitForExit(StopGrace);
            if (umount is not { HasExited: true, ExitCode: 0 })
            {
                _log.WriteLine($"  could not unmount {path}: {(umount is { HasExited: true } ? umount.StandardError.ReadToEnd().Trim() : "umount did not finish")}");
                return;
            }
        }
    }

    private static List<string> MountPointsUnder(string directory) =>
        File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4]).Where(m => m.StartsWith(directory + "/", StringComparison.Ordinal)).ToList();

    private void Stop()
    {
        try
        {
            Posix.Kill(_process.Id, Posix.SIGTERM);
            if (!_process.WaitForExit(StopGrace))
            {
                _process.Kill();
                _process.WaitForExit(StopGrace);
            }
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }

    /// <summary>The daemon leaves its (then empty) cgroup parent behind; remove it in every hierarchy, bounded.</summary>
    private void RemoveCgroupParent()
    {
        foreach (var hierarchy in Directory.EnumerateDirectories("/sys/fs/cgroup"))
        {
            var dir = Path.Combine(hierarchy, CgroupParent);
            if (!Directory.Exists(dir))
            {
                continue;
            }
            try
            {
                // rmdir, not a recursive delete: cgroupfs removes a cgroup with rmdir only, and only when empty.
                Directory.Delete(dir);
            }
            catch (IOException ex)
            {
                _log.WriteLine($"  could not remove cgroup {dir}: {ex.Message}");
            }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
