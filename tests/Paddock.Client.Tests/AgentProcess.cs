using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Paddock.Client.Tests;

/// <summary>
/// A real paddock-agent started as a child process on a free loopback port; the SDK reaches it as debug mode does
/// (one URL, no control plane). It sees this machine's files and accounts. Commands run as <c>nobody</c> by default,
/// as a sandbox's unprivileged user would: root's login profile on a developer machine (pyenv and the like) is slow
/// and noisy, and is not what a sandbox runs. Test directories are made writable for that user.
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

    /// <summary>The account commands and file operations act as unless a test names another.</summary>
    public const string DefaultUser = "nobody";

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
        // A port can be taken by another test run between FreePort and the agent's bind: then try another (3 tries).
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var args = extraArgs.Contains("--default-user") ? extraArgs : [.. extraArgs, "--default-user", DefaultUser];
                return await StartOnceAsync(FreePort(), args);
            }
            catch (PortTakenException) when (attempt < 3)
            {
            }
        }
    }

    private static async Task<AgentProcess> StartOnceAsync(int port, string[] extraArgs)
    {
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
                    if (agent.Log.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
                    {
                        throw new PortTakenException();
                    }
                    throw new InvalidOperationException($"paddock-agent exited with {process.ExitCode} before it was ready: {agent.Log}");
                }
                if (!PortOwner.IsListening(process.Id, port))
                {
                    await Task.Delay(50, ready.Token);
                    continue;
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

internal sealed class PortTakenException : Exception
{
}

/// <summary>One agent for a test class (starting one per test costs about a second).</summary>
public sealed class AgentFixture : IAsyncLifetime
{
    public AgentProcess Agent { get; private set; } = null!;

    public async Task InitializeAsync() => Agent = await AgentProcess.StartAsync();

    public async Task DisposeAsync() => await Agent.DisposeAsync();
}

/// <summary>Temporary directories the agent's default user can write to.</summary>
internal static class TestDirs
{
    public static string Create(string prefix)
    {
        var dir = Directory.CreateTempSubdirectory(prefix);
        File.SetUnixFileMode(dir.FullName, (UnixFileMode)0x1FF); // 0777: the agent acts as "nobody"
        return dir.FullName;
    }
}

/// <summary>Per-test time limits: every await in a test is bounded (STYLE.md, point 9).</summary>
internal static class Limits
{
    public static CancellationToken Token(int seconds = 60) => new CancellationTokenSource(TimeSpan.FromSeconds(seconds)).Token;
}
