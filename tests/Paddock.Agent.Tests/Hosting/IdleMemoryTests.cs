using System.Globalization;
using Paddock.Agent.Tests.Connect;
using Paddock.Agent.Tests.Processes;
using Paddock.Envd.Filesystem;

namespace Paddock.Agent.Tests.Hosting;

/// <summary>The real agent gives memory back once its calls end (<see cref="Paddock.Agent.Hosting.IdleTrim"/>).</summary>
public sealed class IdleMemoryTests
{
    private const long MiB = 1024 * 1024;

    [Fact]
    public async Task An_agent_whose_calls_have_ended_gives_a_MiB_or_more_of_its_own_memory_back()
    {
        using var cts = Calls.Timeout(60);
        await using var agent = await AgentProcess.StartAsync();
        var client = new ConnectClient(agent.Http);
        // Output streams allocate: a few MiB through the agent leave its GC heap grown.
        for (var i = 0; i < 4; i++)
        {
            await using var run = await ProcessRun.StartAsync(client, Calls.Shell("head -c 1048576 /dev/zero | od -v | head -c 2097152"), cts.Token);
            var end = await run.WaitEndAsync(cts.Token);
            Assert.Equal(0, end.ExitCode);
            Assert.Equal(2 * MiB, run.Stdout.Length);
        }
        // A large request leaves garbage too: its body is buffered whole (a unary Connect message) and decoded. Without
        // it the agent, which no longer starts a generic host and so has little start-up garbage, gave back only about
        // half a MiB after the streams above, which reuse the same few MiB of the heap.
        await Assert.ThrowsAsync<Paddock.Envd.Connect.ConnectException>(() => client.UnaryAsync<StatRequest, StatResponse>(
            "/filesystem.Filesystem/Stat", new StatRequest { Path = "/" + new string('a', 4 * 1024 * 1024) }, cts.Token));

        // A call in flight holds the trim off, so this reading is the busy agent's, whatever the machine's pace.
        long busy;
        await using (var holder = await ProcessRun.StartAsync(client, Calls.Shell("echo ready; cat >/dev/null", stdin: true), cts.Token))
        {
            await holder.WaitForOutputAsync(o => o.Contains("ready", StringComparison.Ordinal), cts.Token);
            busy = AnonymousBytes(agent.Pid);
            await client.CloseStdinAsync(holder.Pid, cts.Token);
            Assert.Equal(0, (await holder.WaitEndAsync(cts.Token)).ExitCode);
        }

        // Poll (bounded by the token) until the quiet period has passed and the trim has run.
        await Calls.EventuallyAsync(() => AnonymousBytes(agent.Pid) < busy - MiB, cts.Token);
    }

    /// <summary>
    /// Anonymous of /proc/PID/smaps_rollup: the process's own memory (GC heap, native heap, stacks, written data).
    /// Not Private_Dirty, which also counts the binary's page-cache pages while a fresh copy of it is not yet written back.
    /// </summary>
    private static long AnonymousBytes(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/smaps_rollup").First(l => l.StartsWith("Anonymous:", StringComparison.Ordinal));
        return long.Parse(line["Anonymous:".Length..].Trim().TrimEnd('B', 'k').Trim(), CultureInfo.InvariantCulture) * 1024;
    }
}
