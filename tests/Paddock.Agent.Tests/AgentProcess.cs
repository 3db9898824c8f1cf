using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Paddock.Agent.Tests;

/// <summary>
/// A real paddock-agent started as a child process on a free loopback port, for protocol tests.
/// It runs the build output next to the tests (the JIT build of the same code the AOT binary is made from);
/// set PADDOCK_AGENT_BINARY to test a published binary instead.
/// </summary>
public sealed class AgentProcess : IAsyncDisposable
{
    private readonly Process _process;

    private AgentProcess(Process process, int port)
    {
        _process = process;
        Port = port;
        Http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
    }

    public int Port { get; }

    public HttpClient Http { get; }

    public int Pid => _process.Id;

    public static async Task<AgentProcess> StartAsync(params string[] extraArgs)
    {
        var port = FreePort();
        var binary = Environment.GetEnvironmentVariable("PADDOCK_AGENT_BINARY");
        var start = binary is { Length: > 0 }
            ? new ProcessStartInfo(binary)
            : new ProcessStartInfo("dotnet") { ArgumentList = { Path.Combine(AppContext.BaseDirectory, "paddock-agent.dll") } };
        foreach (var a in new[] { "--listen", "127.0.0.1", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture) }.Concat(extraArgs))
        {
            start.ArgumentList.Add(a);
        }
        start.RedirectStandardError = true;
        start.RedirectStandardOutput = true;
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start paddock-agent");
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        var agent = new AgentProcess(process, port);
        using var ready = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"paddock-agent exited with {process.ExitCode} before it was ready");
            }
            try
            {
                using var response = await agent.Http.GetAsync("/health", ready.Token);
                if (response.StatusCode == HttpStatusCode.NoContent)
                {
                    return agent;
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
            await Task.Delay(50, ready.Token);
        }
    }

    public bool HasExited => _process.HasExited;

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _process.WaitForExitAsync(cts.Token);
        }
        _process.Dispose();
    }
}
