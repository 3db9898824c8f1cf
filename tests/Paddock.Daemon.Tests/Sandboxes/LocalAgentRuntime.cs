using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Tests.Sandboxes;

/// <summary>
/// A test double of the isolation tier that runs a real paddock-agent per sandbox as a local process on a free
/// loopback port (no isolation at all). The proxy path above it is the real one: ConnectAsync opens a TCP connection to
/// the agent's port for 49983, and to a host port the test mapped for any other sandbox port.
/// It outlives the daemons that use it, as a real runtime's sandboxes outlive a daemon restart.
/// </summary>
internal sealed class LocalAgentRuntime(string name = "local-test") : ISandboxRuntime, IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Entry> _sandboxes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, int> _portMap = new();

    /// <summary>Its tier name; tests of the isolation choice run two under different names.</summary>
    public string Name { get; } = name;

    /// <summary>Specs the runtime was asked to start (for asserting what the daemon passed down).</summary>
    public ConcurrentQueue<SandboxSpec> Started { get; } = new();

    /// <summary>Set to make the next StartAsync fail, as a broken runtime would.</summary>
    public string? FailNextStart { get; set; }

    /// <summary>Makes sandbox port <paramref name="sandboxPort"/> of every sandbox reach <paramref name="hostPort"/> on loopback.</summary>
    public void MapPort(int sandboxPort, int hostPort) => _portMap[sandboxPort] = hostPort;

    /// <summary>
    /// Makes it report fork support: a "copy" is a new agent started from the source's spec under the new id, holding the
    /// source's access token as a restored agent would (no memory is copied: for the daemon's fork logic only).
    /// </summary>
    public bool Forkable { get; set; }

    /// <summary>The index of the copy (in each fork) whose start fails, as a failed restore would; null: none.</summary>
    public int? FailCopyAt { get; set; }

    private readonly ConcurrentDictionary<string, SandboxSpec> _specs = new(StringComparer.Ordinal);

    public bool CanFork => Forkable;

    public async Task<IReadOnlyList<ForkedCopy>> ForkAsync(string sourceId, IReadOnlyList<string> copyIds, CancellationToken cancellationToken)
    {
        if (!Forkable)
        {
            throw new SandboxForkUnsupportedException(Name);
        }
        if (!IsAlive(sourceId) || !_specs.TryGetValue(sourceId, out var spec))
        {
            throw new SandboxNotFoundException(sourceId);
        }
        var copies = new List<ForkedCopy>();
        foreach (var id in copyIds)
        {
            if (copies.Count == FailCopyAt)
            {
                copies.Add(new ForkedCopy(id, null, "runsc restore failed (a test's failure)"));
                continue;
            }
            copies.Add(new ForkedCopy(id, await StartAsync(spec with { SandboxId = id }, cancellationToken), null));
        }
        return copies;
    }

    public bool IsAlive(string sandboxId) => _sandboxes.TryGetValue(sandboxId, out var e) && !e.Process.HasExited;

    public async Task<RuntimeSandbox> StartAsync(SandboxSpec spec, CancellationToken cancellationToken)
    {
        Started.Enqueue(spec);
        _specs[spec.SandboxId] = spec;
        if (FailNextStart is { } failure)
        {
            FailNextStart = null;
            throw new InvalidOperationException(failure);
        }
        var port = FreePort();
        // PADDOCK_AGENT_BINARY: a published (NativeAOT) agent; else the JIT build of the same code beside the tests.
        var binary = Environment.GetEnvironmentVariable("PADDOCK_AGENT_BINARY");
        var start = binary is { Length: > 0 }
            ? new ProcessStartInfo(binary)
            : new ProcessStartInfo("dotnet") { ArgumentList = { Path.Combine(AppContext.BaseDirectory, "paddock-agent.dll") } };
        foreach (var a in new[] { "--listen", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(a);
        }
        if (spec.AgentAccessToken is { } token)
        {
            start.ArgumentList.Add("--access-token");
            start.ArgumentList.Add(token);
        }
        foreach (var (name, value) in spec.EnvVars)
        {
            start.Environment[name] = value;
        }
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start paddock-agent");
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            using var ready = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            ready.CancelAfter(TimeSpan.FromSeconds(50));
            while (true)
            {
                if (process.HasExited)
                {
                    throw new InvalidOperationException($"paddock-agent exited with {process.ExitCode} before it was ready");
                }
                try
                {
                    using var response = await http.GetAsync($"http://127.0.0.1:{port}/health", ready.Token);
                    if (response.StatusCode == HttpStatusCode.NoContent)
                    {
                        break;
                    }
                }
                catch (HttpRequestException)
                {
                    // not listening yet
                }
                catch (TaskCanceledException) when (!ready.IsCancellationRequested)
                {
                    // one probe timed out on a busy machine; the overall deadline decides
                }
                await Task.Delay(50, ready.Token);
            }
        }
        catch
        {
            await KillAsync(process);
            throw;
        }
        var entry = new Entry(process, port, DateTimeOffset.UtcNow);
        _sandboxes[spec.SandboxId] = entry;
        return new RuntimeSandbox(spec.SandboxId, process.Id, entry.StartedAt);
    }

    public async Task DestroyAsync(string sandboxId, CancellationToken cancellationToken)
    {
        if (_sandboxes.TryRemove(sandboxId, out var entry))
        {
            await KillAsync(entry.Process);
        }
    }

    public Task<IReadOnlyList<RuntimeSandbox>> ListAsync(CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<RuntimeSandbox>>(_sandboxes
            .Where(kv => !kv.Value.Process.HasExited)
            .Select(kv => new RuntimeSandbox(kv.Key, kv.Value.Process.Id, kv.Value.StartedAt))
            .ToList());

    /// <summary>A local process leaves nothing behind once killed.</summary>
    public Task<IReadOnlyList<string>> CleanupLeftoversAsync(CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<string>>([]);

    /// <summary>A local process has no filesystem of its own to copy.</summary>
    public Task<long> SnapshotFilesystemAsync(string sandboxId, string destination, CancellationToken cancellationToken) =>
        throw new NotSupportedException("the local test runtime has no sandbox filesystem to snapshot");

    public Task<SandboxUsage?> GetUsageAsync(string sandboxId, CancellationToken cancellationToken)
    {
        if (!_sandboxes.TryGetValue(sandboxId, out var entry) || entry.Process.HasExited)
        {
            return Task.FromResult<SandboxUsage?>(null);
        }
        entry.Process.Refresh();
        return Task.FromResult<SandboxUsage?>(new SandboxUsage(DateTimeOffset.UtcNow, 0, 1, entry.Process.WorkingSet64, 512L * 1024 * 1024, 0, 1024L * 1024 * 1024));
    }

    public async ValueTask<Stream> ConnectAsync(string sandboxId, int port, CancellationToken cancellationToken)
    {
        if (!_sandboxes.TryGetValue(sandboxId, out var entry) || entry.Process.HasExited)
        {
            throw new InvalidOperationException($"sandbox '{sandboxId}' is not running");
        }
        var hostPort = port == 49983 ? entry.AgentPort : _portMap.TryGetValue(port, out var mapped) ? mapped : port;
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, hostPort), cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Kills a sandbox behind the daemon's back (as an OOM kill or a host reboot would).</summary>
    public async Task KillBehindTheDaemonsBackAsync(string sandboxId)
    {
        if (_sandboxes.TryRemove(sandboxId, out var entry))
        {
            await KillAsync(entry.Process);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var id in _sandboxes.Keys.ToList())
        {
            await DestroyAsync(id, CancellationToken.None);
        }
    }

    private static async Task KillAsync(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await process.WaitForExitAsync(cts.Token);
        }
        finally
        {
            process.Dispose();
        }
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private sealed record Entry(Process Process, int AgentPort, DateTimeOffset StartedAt);
}
