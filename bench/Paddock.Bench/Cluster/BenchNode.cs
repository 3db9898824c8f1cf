using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Paddock.Bench.Native;

namespace Paddock.Bench.Cluster;

/// <summary>
/// One paddockd in cluster mode, started by the bench inside a namespace of its <see cref="BenchNetwork"/> with
/// <c>nsenter --net</c> (it switches the network namespace and execs, so the process started is paddockd itself and
/// its pid is the one to SIGKILL; <c>ip netns exec</c> would remount /sys and hide the cgroup hierarchies runc needs).
/// Its own state directory, cgroup parent and sandbox address pool. <see cref="DisposeAsync"/> stops it and, for one
/// that was SIGKILLed and not restarted, ends what it left (its runc containers, mounts, cgroups) by their paths.
/// </summary>
internal sealed class BenchNode : IAsyncDisposable
{
    private const int ApiPort = 3000;

    private readonly string[] _arguments;
    private readonly Dictionary<string, string> _environment;
    private readonly TextWriter _log;
    private readonly StringBuilder _output = new();
    private Process? _process;

    public BenchNode(ClusterBenchOptions options, string nodeId, int index, string netns, string storeUri, string apiKey, TextWriter log)
    {
        NodeId = nodeId;
        _log = log;
        Address = BenchNetwork.NodeAddress(index);
        StateDir = Directory.CreateTempSubdirectory($"paddock-bench-cluster-{nodeId}-").FullName;
        ApiKey = apiKey;
        Url = new Uri($"http://{Address}:{ApiPort}");
        CgroupParent = $"paddock-bench-cluster-{Environment.ProcessId}-{nodeId}";
        _arguments =
        [
            "--net=/var/run/netns/" + netns, "--", options.Binary,
            "--cluster", "--node-id", nodeId, "--advertise", Address, "--cluster-port", "11111",
            "--cluster-probe-timeout", options.ProbeTimeout.TotalSeconds.ToString(CultureInfo.InvariantCulture),
            "--listen", $"http://{Address}:{ApiPort}", "--store", storeUri, "--state-dir", StateDir,
            "--templates-dir", options.TemplatesDir, "--freeze-after", "0", "--metrics-interval", "0",
            "--max-sandboxes", options.MaxSandboxes.ToString(CultureInfo.InvariantCulture),
        ];
        if (options.PoolSize > 0)
        {
            _arguments = [.. _arguments, "--pool", $"base={options.PoolSize.ToString(CultureInfo.InvariantCulture)}"];
        }
        _environment = new Dictionary<string, string>
        {
            ["PADDOCK_API_KEY"] = apiKey,
            // Inside the node's own namespace, apart from its link (10.217.0.0/16) and every other daemon's pool.
            ["PADDOCK_Runc__Network__Pool"] = $"10.{(231 + index).ToString(CultureInfo.InvariantCulture)}.0.0/16",
            ["PADDOCK_Runc__CgroupParent"] = CgroupParent,
            ["PADDOCK_Gvisor__CgroupParent"] = CgroupParent + "-gvisor",
        };
        if (Environment.GetEnvironmentVariable("PADDOCK_AGENT_BINARY") is { Length: > 0 } agent)
        {
            _environment["PADDOCK_Runc__AgentBinary"] = agent;
        }
    }

    public string NodeId { get; }

    public string Address { get; }

    public Uri Url { get; }

    public string StateDir { get; }

    public string ApiKey { get; }

    public string CgroupParent { get; }

    public int? Pid => _process is { HasExited: false } p ? p.Id : null;

    public string RecentOutput()
    {
        lock (_output)
        {
            var text = _output.ToString();
            return text.Length > 64000 ? text[^64000..] : text;
        }
    }

    /// <summary>Starts paddockd (again, after a SIGKILL: the same id and state) and waits, bounded, until its API answers.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("nsenter") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in _arguments)
        {
            start.ArgumentList.Add(arg);
        }
        foreach (var (name, value) in _environment)
        {
            start.Environment[name] = value;
        }
        _process?.Dispose();
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start nsenter");
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        using var ready = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        ready.CancelAfter(TimeSpan.FromSeconds(180));
        using var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"paddockd {NodeId} exited with {process.ExitCode} before it was ready:\n{RecentOutput()}");
            }
            try
            {
                using var response = await probe.GetAsync(new Uri(Url, "/health"), ready.Token);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException) when (!ready.IsCancellationRequested)
            {
                // One probe timed out; the loop is bounded by `ready`.
            }
            await Task.Delay(200, ready.Token);
        }
    }

    /// <summary>SIGKILL by pid: no shutdown at all, as a crashed host.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } process)
        {
            Posix.Kill(process.Id, Posix.SIGKILL);
            await process.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>
    /// The membership as this node sees it (<c>GET /cluster/nodes</c>): node id, silo and status of each. A node
    /// restarted under the same id is a new silo; its old one stays listed as dead.
    /// </summary>
    public async Task<IReadOnlyList<(string NodeId, string Silo, string Status)>> NodesAsync(HttpClient http, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(Url, "/cluster/nodes"));
        request.Headers.Add("X-API-Key", ApiKey);
        using var response = await http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new HttpRequestException($"GET /cluster/nodes on {NodeId} answered {(int)response.StatusCode}: {text}");
        }
        return JsonNode.Parse(text)!["nodes"]!.AsArray().Select(n => ((string)n!["nodeID"]!, (string)n["silo"]!, (string)n["status"]!)).ToList();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_output)
        {
            if (_output.Length < 256 * 1024)
            {
                _output.AppendLine(line);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } process)
        {
            // SIGTERM: the daemon leaves the cluster and stops (SIGKILL after 60 s). Sandboxes outlive a stopped daemon;
            // every cycle kills its own, and what a failure left running is ended below by runc.
            Posix.Kill(process.Id, Posix.SIGTERM);
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            try
            {
                await process.WaitForExitAsync(wait.Token);
            }
            catch (OperationCanceledException)
            {
                _log.WriteLine($"  paddockd {NodeId} did not stop within 60 s: SIGKILL");
                await KillAsync();
            }
        }
        _process?.Dispose();
        // What a SIGKILLed node, or a run that failed half-way, left running: its containers, ended by runc itself.
        var runcRoot = Path.Combine(StateDir, "runc");
        if (Directory.Exists(runcRoot))
        {
            foreach (var container in Directory.GetDirectories(runcRoot).Select(Path.GetFileName))
            {
                await Tools.TryRunAsync(_log, "runc", "--root", runcRoot, "delete", "--force", container!);
            }
        }
        // Its sandboxes' mounts, the deepest first, lazily, so that the directory can go.
        var mounts = File.ReadLines("/proc/self/mountinfo")
            .Select(line => line.Split(' ')[4].Replace("\\040", " ", StringComparison.Ordinal))
            .Where(target => target.StartsWith(StateDir + "/", StringComparison.Ordinal))
            .OrderByDescending(target => target.Length)
            .ToList();
        foreach (var target in mounts)
        {
            await Tools.TryRunAsync(_log, "umount", "-l", target);
        }
        // Its cgroup parents in every hierarchy (rmdir only: cgroupfs removes an empty cgroup with rmdir), leaf first.
        foreach (var hierarchy in Directory.GetDirectories("/sys/fs/cgroup"))
        {
            foreach (var name in new[] { CgroupParent, CgroupParent + "-gvisor" })
            {
                var parent = Path.Combine(hierarchy, name);
                if (!Directory.Exists(parent))
                {
                    continue;
                }
                foreach (var dir in Directory.GetDirectories(parent, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length).Append(parent))
                {
                    try
                    {
                        Directory.Delete(dir);
                    }
                    catch (IOException ex)
                    {
                        _log.WriteLine($"  could not remove cgroup {dir}: {ex.Message}");
                    }
                }
            }
        }
        if (mounts.Count == 0 || !File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ')[4].StartsWith(StateDir + "/", StringComparison.Ordinal)))
        {
            try
            {
                Directory.Delete(StateDir, recursive: true);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _log.WriteLine($"  could not remove {StateDir}: {ex.Message}");
            }
        }
        else
        {
            // Never delete recursively through a mount: it would delete inside a sandbox's filesystem.
            _log.WriteLine($"  not removing {StateDir}: mounts still under it");
        }
    }
}
