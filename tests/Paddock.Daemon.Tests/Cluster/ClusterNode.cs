using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Paddock.Daemon.Tests.Runtimes;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>
/// One real paddockd process in cluster mode, started inside a network namespace of the test's
/// <see cref="ClusterNetwork"/> by <c>nsenter --net</c> (which switches only the network namespace and then execs:
/// the process started is paddockd itself, so its pid is the one to SIGKILL; <c>ip netns exec</c> would also remount
/// /sys and hide the cgroup hierarchies runc needs). Its sandboxes get their own address pool and cgroup parent, so
/// three nodes on one host do not take each other's sandboxes for their own.
/// </summary>
internal sealed class ClusterNode : IAsyncDisposable
{
    private const int ApiPort = 3000;

    /// <summary>Each node's limit unless a test gives its own: small, so that a few creates fill the cluster.</summary>
    public const int MaxSandboxes = 2;

    private readonly StringBuilder _log = new();
    private readonly string[] _arguments;
    private readonly Dictionary<string, string> _environment;
    private Process? _process;

    public ClusterNode(string nodeId, int index, string netns, string storeUri, string apiKey, TimeSpan probeTimeout, int maxSandboxes = MaxSandboxes)
    {
        NodeId = nodeId;
        Address = ClusterNetwork.NodeAddress(index);
        StateDir = Directory.CreateTempSubdirectory($"paddock-cluster-{nodeId}-").FullName;
        ApiKey = apiKey;
        Api = new HttpClient { BaseAddress = new Uri($"http://{Address}:{ApiPort}"), Timeout = TimeSpan.FromSeconds(30) };
        Api.DefaultRequestHeaders.Add("X-API-Key", apiKey);
        var daemon = Path.Combine(TestEnvironment.RepositoryRoot, "src", "Paddock.Daemon", "bin",
            AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug", "net10.0", "paddockd.dll");
        _arguments =
        [
            "--net=/var/run/netns/" + netns, "--", "dotnet", daemon,
            "--cluster", "--node-id", nodeId, "--advertise", Address, "--cluster-port", "11111",
            "--cluster-probe-timeout", probeTimeout.TotalSeconds.ToString(CultureInfo.InvariantCulture),
            "--listen", $"http://{Address}:{ApiPort}", "--store", storeUri, "--state-dir", StateDir,
            "--templates-dir", TestEnvironment.TemplatesDirectory, "--freeze-after", "0", "--metrics-interval", "0",
            "--max-sandboxes", maxSandboxes.ToString(CultureInfo.InvariantCulture),
        ];
        _environment = new Dictionary<string, string>
        {
            ["PADDOCK_API_KEY"] = apiKey,
            ["PADDOCK_Runc__Network__Pool"] = $"10.{217 + index}.0.0/16",
            ["PADDOCK_Runc__CgroupParent"] = $"paddock-{Path.GetFileName(StateDir)}",
        };
        if (Environment.GetEnvironmentVariable("PADDOCK_AGENT_BINARY") is { Length: > 0 } agent)
        {
            _environment["PADDOCK_Runc__AgentBinary"] = agent;
        }
    }

    public string NodeId { get; }

    public string Address { get; }

    public string StateDir { get; }

    public string ApiKey { get; }

    public HttpClient Api { get; }

    public int? Pid => _process is { HasExited: false } p ? p.Id : null;

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

    /// <summary>Starts paddockd and waits (bounded) until its API answers.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("nsenter") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var arg in _arguments)
        {
            start.ArgumentList.Add(arg);
        }
        foreach (var (name, value) in _environment)
        {
            start.Environment[name] = value;
        }
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start nsenter");
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        using var ready = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        ready.CancelAfter(TimeSpan.FromSeconds(120));
        using var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"paddockd {NodeId} exited with {process.ExitCode} before it was ready:\n{Log}");
            }
            try
            {
                using var response = await probe.GetAsync(new Uri(Api.BaseAddress!, "/health"), ready.Token);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
            catch (TaskCanceledException) when (!ready.IsCancellationRequested)
            {
                // one probe timed out; the loop is bounded by `ready`
            }
            await Task.Delay(200, ready.Token);
        }
    }

    /// <summary>SIGKILL: no shutdown at all, as a crashed host.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill();
            await process.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>SIGTERM (the daemon kills its sandboxes and leaves the cluster), SIGKILL after 30 s.</summary>
    public async Task StopAsync()
    {
        if (_process is not { HasExited: false } process)
        {
            return;
        }
        using (var term = Process.Start("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await term.WaitForExitAsync(CancellationToken.None);
        }
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await process.WaitForExitAsync(wait.Token);
        }
        catch (OperationCanceledException)
        {
            await KillAsync();
        }
    }

    /// <summary>GET /cluster/nodes of this node: its view of the membership.</summary>
    public async Task<JsonArray> NodesAsync(CancellationToken cancellationToken)
    {
        var body = await Api.GetFromJsonAsync<JsonObject>("/cluster/nodes", cancellationToken) ?? throw new InvalidOperationException("empty /cluster/nodes");
        return body["nodes"]!.AsArray();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_log)
        {
            // Bounded: for failure messages only.
            if (_log.Length < 256 * 1024)
            {
                _log.AppendLine(line);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _process?.Dispose();
        Api.Dispose();
        // A node that was SIGKILLed and not restarted left its sandboxes running: ended here by runc itself.
        var runcRoot = Path.Combine(StateDir, "runc");
        if (Directory.Exists(runcRoot))
        {
            foreach (var container in Directory.GetDirectories(runcRoot).Select(Path.GetFileName))
            {
                using var delete = Process.Start("runc", ["--root", runcRoot, "delete", "--force", container!]);
                await delete.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
            }
        }
        // What its sandboxes left mounted (a SIGKILLed node never tore them down; a stopping one may still be tearing
        // down): the deepest first, lazily, so that the directory can go.
        var mounts = (await File.ReadAllLinesAsync("/proc/self/mountinfo"))
            .Select(line => line.Split(' ')[4].Replace("\\040", " ", StringComparison.Ordinal))
            .Where(target => target.StartsWith(StateDir + "/", StringComparison.Ordinal))
            .OrderByDescending(target => target.Length);
        foreach (var target in mounts)
        {
            using var umount = Process.Start("umount", ["-l", target]);
            await umount.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        }
        // Its cgroup parent in every hierarchy: emptied by then (its processes are gone), removed leaf first.
        foreach (var hierarchy in Directory.GetDirectories("/sys/fs/cgroup"))
        {
            var parent = Path.Combine(hierarchy, _environment["PADDOCK_Runc__CgroupParent"]);
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
                catch (IOException)
                {
                    // Still busy: left for the host's own cleanup; named for this test.
                }
            }
        }
        try
        {
            Directory.Delete(StateDir, recursive: true);
        }
        catch (IOException)
        {
            // A mount left by a crashed sandbox keeps it; it is under /tmp and named for this test.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
