using System.Net.Sockets;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>The wait of a start for the sandbox's agent to answer <c>GET /health</c>, whatever the tier.</summary>
internal static class AgentReadiness
{
    /// <summary>
    /// Probes the agent through <paramref name="connect"/> until it answers, while the host process
    /// <paramref name="hostPid"/> that carries it runs. Throws <see cref="SandboxStartException"/> with
    /// <paramref name="logTail"/> when that process exits or <paramref name="timeout"/> passes.
    /// </summary>
    public static async Task WaitAsync(
        string sandboxId,
        int hostPid,
        Func<CancellationToken, ValueTask<Stream>> connect,
        TimeSpan timeout,
        Func<string> logTail,
        CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        // A probe is an open, two setns calls and a loopback connect (tens of microseconds), so probing often costs
        // little, while each wait past the agent's first listen is added to every cold create: 1, 2, 4, then every
        // 5 ms (was capped at 50 ms, which could add up to 50 ms to a start; issue 6's lean cold path).
        var delay = TimeSpan.FromMilliseconds(1);
        try
        {
            while (true)
            {
                if (!ProcessStat.IsRunning(hostPid))
                {
                    throw new SandboxStartException(sandboxId, "the agent exited before it answered: " + logTail());
                }
                try
                {
                    await using var stream = await connect(deadline.Token);
                    if (await AgentProbe.IsHealthyAsync(stream, deadline.Token))
                    {
                        return;
                    }
                }
                catch (Exception ex) when (ex is SandboxPortUnreachableException or IOException or SocketException)
                {
                    // Not listening yet, or it closed the connection while starting: try again.
                }
                await Task.Delay(delay, deadline.Token);
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5));
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new SandboxStartException(sandboxId,
                $"the agent did not answer GET /health within {timeout.TotalSeconds:0} s: " + logTail());
        }
    }
}
