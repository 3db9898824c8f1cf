using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Paddock.Client.Tests;

namespace Paddock.Security.Tests;

/// <summary>
/// The real paddockd as a child process on a free loopback port, over the real runc tier, with a state directory and
/// a cgroup parent of its own (so that what the tests count on the host is this daemon's alone). A separate process,
/// not the in-process host the daemon tests use: the battery samples its memory, checks that it is still alive after
/// hostile input, and SIGKILLs it.
/// </summary>
internal sealed class PaddockdProcess : IAsyncDisposable
{
    private static int s_instances;
    private readonly StringBuilder _log = new();
    private readonly IReadOnlyDictionary<string, string> _environment;
    private Process _process;

    private PaddockdProcess(Process process, Uri url, string stateDir, string cgroupParent, IReadOnlyDictionary<string, string> environment)
    {
        _process = process;
        _environment = environment;
        Url = url;
        StateDir = stateDir;
        CgroupParent = cgroupParent;
    }

    public Uri Url { get; private set; }

    public string StateDir { get; }

    /// <summary>
    /// The cgroup under which the daemon's runc tier puts each sandbox's cgroup (in every v1 hierarchy); its gVisor tier
    /// uses <see cref="HostLeftovers.GvisorCgroupParent"/> of it.
    /// </summary>
    public string CgroupParent { get; }

    public string ApiKey { get; private set; } = "";

    public int Pid => _process.Id;

    public bool IsAlive => !_process.HasExited;

    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>Resident memory of the daemon now (VmRSS of /proc/PID/status), in bytes.</summary>
    public long ResidentBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{Pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
            }
        }
        throw new InvalidOperationException("no VmRSS in /proc/" + Pid + "/status");
    }

    /// <param name="stateDir">An empty directory for its state (a fault test's small tmpfs); a new temporary one by default.</param>
    /// <param name="environment">Extra environment of the daemon (configuration as PADDOCK_Section__Key).</param>
    public static async Task<PaddockdProcess> StartAsync(string? stateDir = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var state = stateDir ?? Directory.CreateTempSubdirectory("paddock-security-").FullName;
        environment ??= new Dictionary<string, string>(StringComparer.Ordinal);
        // Its own per daemon: a runc tier removes every sandbox cgroup under its parent that it does not run
        // (leftovers), so two daemons sharing one would destroy each other's sandboxes (seen here).
        var cgroupParent = $"paddock-security-{Environment.ProcessId}-{Interlocked.Increment(ref s_instances)}";
        var (url, process) = Launch(state, cgroupParent, environment);
        var daemon = new PaddockdProcess(process, url, state, cgroupParent, environment);
        daemon.Attach(process);
        try
        {
            await daemon.WaitReadyAsync();
            return daemon;
        }
        catch
        {
            await daemon.DisposeAsync();
            throw;
        }
    }

    /// <summary>SIGKILLs the daemon (no cleanup of its own) and starts a new one over the same state directory.</summary>
    public async Task KillAndRestartAsync()
    {
        _process.Kill();
        await _process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
        _process.Dispose();
        var (url, process) = Launch(StateDir, CgroupParent, _environment);
        _process = process;
        Url = url;
        Attach(process);
        await WaitReadyAsync();
    }

    private static (Uri Url, Process Process) Launch(string state, string cgroupParent, IReadOnlyDictionary<string, string> environment)
    {
        var port = FreePort();
        var url = new Uri($"http://127.0.0.1:{port}");
        var (file, args) = Repo.Program("PADDOCK_DAEMON", "Paddock.Daemon", "paddockd", null);
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        var testState = Environment.GetEnvironmentVariable("PADDOCK_TEST_STATE") is { Length: > 0 } ts ? ts : "/var/lib/paddock-test";
        var templates = Environment.GetEnvironmentVariable("PADDOCK_TEMPLATES_DIR") is { Length: > 0 } t ? t : Path.Combine(testState, "templates");
        foreach (var a in args.Concat(["--listen", url.ToString().TrimEnd('/'), "--state-dir", state, "--templates-dir", templates]))
        {
            start.ArgumentList.Add(a);
        }
        start.Environment.Remove("PADDOCK_API_KEY");
        start.Environment["PADDOCK_Runc__CgroupParent"] = cgroupParent;
        // The gVisor tier's own, beside it (HostLeftovers counts both).
        start.Environment["PADDOCK_Gvisor__CgroupParent"] = HostLeftovers.GvisorCgroupParent(cgroupParent);
        if (Environment.GetEnvironmentVariable("PADDOCK_AGENT_BINARY") is { Length: > 0 } agent)
        {
            start.Environment["PADDOCK_Runc__AgentBinary"] = agent;
        }
        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }
        return (url, Process.Start(start) ?? throw new InvalidOperationException("could not start paddockd"));
    }

    private void Attach(Process process)
    {
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
    }

    private async Task WaitReadyAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        using var ready = new CancellationTokenSource(TimeSpan.FromSeconds(180));
        while (true)
        {
            if (_process.HasExited)
            {
                // Until the output readers reached the end of both streams, the last lines (the reason) may be missing.
                await _process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
                throw new InvalidOperationException($"paddockd exited with {_process.ExitCode} before it was ready: {Log}");
            }
            if (PortOwner.IsListening(_process.Id, Url.Port))
            {
                try
                {
                    using var response = await http.GetAsync(new Uri(Url, "/health"), ready.Token);
                    var keyFile = Path.Combine(StateDir, "api-key");
                    if (response.IsSuccessStatusCode && File.Exists(keyFile))
                    {
                        ApiKey = (await File.ReadAllTextAsync(keyFile, ready.Token)).Trim();
                        if (ApiKey.Length > 0)
                        {
                            return;
                        }
                    }
                }
                catch (HttpRequestException)
                {
                    // not answering yet
                }
                catch (TaskCanceledException) when (!ready.IsCancellationRequested)
                {
                    // one probe timed out; the loop is bounded by `ready`
                }
            }
            await Task.Delay(100, ready.Token);
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_log)
        {
            // Bounded: a flood test must not grow the test process instead of the daemon.
            if (_log.Length < 1 << 20)
            {
                _log.AppendLine(line);
            }
        }
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Stops the daemon (SIGTERM: it kills its sandboxes; SIGKILL after 30 s) and removes its state.</summary>
    public async ValueTask DisposeAsync()
    {
        int? stopCode = null;
        if (!_process.HasExited)
        {
            using (var term = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]))
            {
                await term.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
            }
            try
            {
                await _process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
            }
            stopCode = _process.ExitCode;
        }
        _process.Dispose();
        await HostLeftovers.RemoveAsync(StateDir, CgroupParent);
        // A clean stop is part of what every test checks: a daemon that crashed on the way out (it once aborted with
        // an ObjectDisposedException from a second dispose) exits non-zero here.
        if (stopCode is { } code && code != 0)
        {
            throw new InvalidOperationException($"paddockd exited with {code} on SIGTERM: {Log[Math.Max(0, Log.Length - 3000)..]}");
        }
    }
}
