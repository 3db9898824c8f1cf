using Paddock.Agent.Tests.Connect;

namespace Paddock.Agent.Tests.Processes;

/// <summary>The agent reaps its children and the orphans reparented to it.</summary>
public sealed class ReaperTests : IClassFixture<AgentFixture>
{
    private readonly AgentFixture _fixture;

    public ReaperTests(AgentFixture fixture)
    {
        _fixture = fixture;
    }

    [Fact]
    public async Task An_orphaned_background_job_is_reparented_to_the_agent_and_reaped_without_a_zombie()
    {
        using var cts = Calls.Timeout();
        await using var run = await ProcessRun.StartAsync(new ConnectClient(_fixture.Agent.Http), Calls.Shell("sleep 1 >/dev/null 2>&1 & echo $!"), cts.Token);
        await run.WaitEndAsync(cts.Token);
        var orphan = int.Parse(run.StdoutText.Trim(), System.Globalization.CultureInfo.InvariantCulture);

        // The shell is gone; its job (alive for about a second more) now belongs to the agent.
        Assert.Equal(_fixture.Agent.Pid, ParentOf(orphan));
        await Calls.EventuallyAsync(() => !File.Exists($"/proc/{orphan}/stat"), cts.Token);
    }

    [Fact]
    public async Task Many_short_commands_leave_no_zombie_children()
    {
        using var cts = Calls.Timeout(60);
        var client = new ConnectClient(_fixture.Agent.Http);
        var runs = Enumerable.Range(0, 20).Select(async i =>
        {
            await using var run = await ProcessRun.StartAsync(client, Calls.Shell($"echo {i}; (true &)"), cts.Token);
            var end = await run.WaitEndAsync(cts.Token);
            Assert.Equal(0, end.ExitCode);
            Assert.Equal($"{i}\n", run.StdoutText);
        });
        await Task.WhenAll(runs);

        await Calls.EventuallyAsync(() => ZombieChildrenOf(_fixture.Agent.Pid) == 0, cts.Token);
    }

    private static int? ParentOf(int pid)
    {
        try
        {
            var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("PPid:", StringComparison.Ordinal));
            return int.Parse(line[5..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static int ZombieChildrenOf(int parent)
    {
        var zombies = 0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            try
            {
                // /proc/PID/stat: "pid (comm) state ppid ..."; comm may contain spaces, so parse after the last ')'.
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (fields[0] == "Z" && fields[1] == parent.ToString(System.Globalization.CultureInfo.InvariantCulture))
                {
                    zombies++;
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // not a process, or gone meanwhile
            }
        }
        return zombies;
    }
}
