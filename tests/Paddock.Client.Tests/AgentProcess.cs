using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Paddock.Client.Tests;

/// <summary>
/// A real paddock-agent started as a child process on a free loopback port; the SDK reaches it as debug mode does
/// (one URL, no control plane). It runs as this user (root in CI), so "user" tests use accounts of this machine.
/// </summary>
public sealed class AgentProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _log = new();

    private AgentProcess(Process process, int port)
    {
        _process = process;
        Port = port;
        Url = new Uri($"http://127.0.0.1:{port}");
    }

    public int Port { get; }

    public Uri Url { get; }

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

    /// <summary>A sandbox object for this agent, optionally with an access token.</summary>
    public Sandbox Sandbox(string? accessToken = null, TimeSpan? requestTimeout = null) =>
        Paddock.Client.Sandbox.ForEnvd(new ConnectionOptions { Debug = true, SandboxUrl = Url, ApiKey = null, RequestTimeout = requestTimeout ?? TimeSpan.FromSeconds(30) }, "agent-under-test", accessToken);

    public static async Task<AgentProcess> StartAsync(params string[] extraArgs)
    {
        var port = FreePort();
        var (file, args) = Repo.Program("PADDOCK_AGENT_BINARY", "Paddock.Agent", "paddock-agent", "linux-x64");
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args.Concat(["--listen", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture)]).Concat(extraArgs))
        {
            start.ArgumentList.Add(a);
        }
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start paddock-agent");
        var agent = new AgentProcess(process, port);
        process.OutputDataReceived += (_, e) => agent.Append(e.Data);
        process.ErrorDataReceived += (_, e) => agent.Append(e.Data);
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        using var ready = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            while (true)
            {
                if (process.HasExited)
                {
                    throw new InvalidOperationException($"paddock-agent exited with {process.ExitCode} before it was ready: {agent.Log}");
                }
                try
                {
                    using var response = await http.GetAsync(new Uri(agent.Url, "/health"), ready.Token);
                    if (response.StatusCode == HttpStatusCode.NoContent)
                    {
                        return agent;
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
                await Task.Delay(50, ready.Token);
            }
        }
        catch
        {
            await agent.DisposeAsync();
            throw;
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
            _log.AppendLine(line);
        }
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _process.WaitForExitAsync(cts.Token);
        }
        _process.Dispose();
    }
}

/// <summary>One agent for a test class (starting one per test costs about a second).</summary>
public sealed class AgentFixture : IAsyncLifetime
{
    public AgentProcess Agent { get; private set; } = null!;

    public async Task InitializeAsync() => Agent = await AgentProcess.StartAsync();

    public async Task DisposeAsync() => await Agent.DisposeAsync();
}

/// <summary>Per-test time limits: every await in a test is bounded (STYLE.md, point 9).</summary>
internal static class Limits
{
    public static CancellationToken Token(int seconds = 60) => new CancellationTokenSource(TimeSpan.FromSeconds(seconds)).Token;
}
