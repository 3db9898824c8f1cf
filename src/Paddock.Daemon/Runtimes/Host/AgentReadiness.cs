using System.Net.Sockets;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>The wait of a start for the sandbox's agent to answer <c>GET /health</c>, whatever the tier.</summary>
internal static class AgentReadiness
{
    /// <summary>
    /// How long one probe waits for the agent's answer once connected. The agent answers /health in well under a
    /// millisecond of its own time; a second is ample under this host's load and short against the whole wait.
    /// </summary>
    internal static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Probes the agent through <paramref name="connect"/> (null: nothing listens yet) until it answers, while the host process
    /// <paramref name="hostPid"/> that carries it runs. Throws <see cref="SandboxStartException"/> with
    /// <paramref name="logTail"/> when that process exits or <paramref name="timeout"/> passes.
    /// <paramref name="listeningAfter"/> (Unix milliseconds): an answer counts only from listening sockets bound after
    /// it (<see cref="AgentProbe.IsHealthyAsync"/>); an answer from older ones is an agent not ready yet.
    /// </summary>
    public static async Task WaitAsync(
        string sandboxId,
        int hostPid,
        Func<CancellationToken, ValueTask<Stream?>> connect,
        TimeSpan timeout,
        Func<string> logTail,
        CancellationToken cancellationToken,
        long? listeningAfter = null)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        // A probe is an open, two setns calls and a loopback connect (tens of microseconds), so probing often costs
        // little, while each wait past the agent's first listen is added to every cold create: 1, 2, 4, then every
        // 5 ms (was capped at 50 ms, which could add up to 50 ms to a start; issue 6's lean cold path).
        var delay = TimeSpan.FromMilliseconds(1);
        var stalled = 0;
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
                    // Each attempt is bounded, not only the whole wait: a gVisor sandbox restored from a checkpoint
                    // (before the agent bound its listener again after a restore, ARCHITECTURE.md) completed the handshake of the first probe and acknowledged
                    // its request, and its agent never answered; unbounded, that one connection used the whole wait
                    // (packet capture on the host end of the link). Bounded, the probe tries again, and the error
                    // counts the connections that were accepted but not answered: a wedged agent, not a slow start.
                    if (stream is not null)
                    {
                        using var attempt = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token);
                        attempt.CancelAfter(AttemptTimeout);
                        if (await AgentProbe.IsHealthyAsync(stream, attempt.Token, listeningAfter))
                        {
                            return;
                        }
                    }
                }
                catch (OperationCanceledException) when (!deadline.IsCancellationRequested)
                {
                    stalled++;
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
                $"the agent did not answer GET /health within {timeout.TotalSeconds:0} s ({stalled} connections accepted but not answered): " + logTail());
        }
    }
}
