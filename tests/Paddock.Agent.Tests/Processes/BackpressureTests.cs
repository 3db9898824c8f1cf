using Paddock.Agent.Tests.Connect;

namespace Paddock.Agent.Tests.Processes;

/// <summary>An output flood with a stalled, then vanished, client: the agent's memory stays bounded.</summary>
public sealed class BackpressureTests : IClassFixture<AgentFixture>
{
    private const long FloodBytes = 1L << 30;

    private readonly AgentFixture _fixture;

    public BackpressureTests(AgentFixture fixture)
    {
        _fixture = fixture;
    }

    [Fact]
    public async Task A_stalled_client_blocks_a_flood_and_a_vanished_one_lets_it_drain_without_buffering_it()
    {
        using var cts = Calls.Timeout(120);
        var client = new ConnectClient(_fixture.Agent.Http);
        var run = await ProcessRun.StartAsync(client, Calls.Shell($"head -c {FloodBytes} /dev/zero"), cts.Token);
        uint pid = run.Pid;
        try
        {
            // Nothing is read: the flood must stop at the bounded buffers (backpressure), not race to its end.
            await Task.Delay(TimeSpan.FromSeconds(2), cts.Token);
            Assert.Contains((await client.ListAsync(cts.Token)).Processes, p => p.Pid == pid);
        }
        finally
        {
            await run.DisposeAsync(); // the client vanishes
        }

        // With no subscriber left the agent drains and discards the rest, so the process finishes.
        await Calls.EventuallyAsync(() => !Directory.Exists($"/proc/{pid}"), cts.Token);
        var peak = PeakResidentBytes(_fixture.Agent.Pid);
        Assert.True(peak < FloodBytes / 4, $"the agent's peak resident memory was {peak >> 20} MiB for a {FloodBytes >> 20} MiB flood");
    }

    private static long PeakResidentBytes(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line[6..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
    }
}
