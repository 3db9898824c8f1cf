using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Paddock.Agent.Tests.Connect;

namespace Paddock.Agent.Tests.Processes;

/// <summary>The agent as PID 1 (a container's init), started in a PID namespace of its own with unshare(1).</summary>
public sealed class InitShutdownTests
{
    [Fact]
    public async Task As_PID_1_the_agent_forwards_SIGTERM_to_its_processes_and_exits_cleanly_after_them()
    {
        using var cts = Calls.Timeout(60);
        var port = FreePort();
        var binary = Environment.GetEnvironmentVariable("PADDOCK_AGENT_BINARY");
        var start = new ProcessStartInfo("unshare") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--pid", "--fork", "--mount-proc", "--kill-child" })
        {
            start.ArgumentList.Add(a);
        }
        if (binary is { Length: > 0 })
        {
            start.ArgumentList.Add(binary);
        }
        else
        {
            start.ArgumentList.Add("dotnet");
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "paddock-agent.dll"));
        }
        foreach (var a in new[] { "--listen", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(a);
        }
        using var unshare = Process.Start(start)!;
        unshare.BeginOutputReadLine();
        unshare.BeginErrorReadLine();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            await WaitHealthyAsync(http, unshare, cts.Token);
            var client = new ConnectClient(http);

            await using var run = await ProcessRun.StartAsync(client, Calls.Shell("echo $$; sleep 1000"), cts.Token);
            await run.WaitForOutputAsync(o => o.EndsWith('\n'), cts.Token);
            Assert.NotEqual("1\n", run.StdoutText); // it is the agent that is PID 1

            var agent = ChildOf(unshare.Id);
            Assert.Equal(0, Kill(agent, 15));

            // The process got the agent's SIGTERM (not a kill), its end still reached the client, then the agent exited 0.
            var end = await run.WaitEndAsync(cts.Token);
            Assert.Equal("signal: terminated", end.Status);
            await unshare.WaitForExitAsync(cts.Token);
            Assert.Equal(0, unshare.ExitCode);
        }
        finally
        {
            if (!unshare.HasExited)
            {
                unshare.Kill(entireProcessTree: true);
                using var kill = Calls.Timeout(10);
                await unshare.WaitForExitAsync(kill.Token);
            }
        }
    }

    private static async Task WaitHealthyAsync(HttpClient http, Process unshare, CancellationToken cancellationToken)
    {
        while (true)
        {
            Assert.False(unshare.HasExited, "the agent exited before it was ready");
            try
            {
                using var response = await http.GetAsync("/health", cancellationToken);
                if (response.StatusCode == HttpStatusCode.NoContent)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
            await Task.Delay(50, cancellationToken);
        }
    }

    private static int ChildOf(int pid)
    {
        var children = File.ReadAllText($"/proc/{pid}/task/{pid}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return int.Parse(Assert.Single(children), CultureInfo.InvariantCulture);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    private static int Kill(int pid, int signal) => kill(pid, signal);
}
