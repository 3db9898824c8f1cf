namespace Paddock.Security.Tests;

/// <summary>
/// Root in the attacker sandbox tries to grow its host-side agent.log without end through the agent's stdout
/// (/proc/1/fd/1; issue 14). On runc the agent is not dumpable and the open is refused; on gVisor the Sentry hands the
/// agent's stdout out (it is a FIFO there, <c>AgentLogDrain</c>), the writes go through, and the daemon keeps at most
/// <see cref="BatteryFixture.AgentLogBound"/> bytes in agent.log and as many in agent.log.1. Either way the host's
/// files stay within twice the bound.
/// </summary>
[Collection(BatteryCollection.Name)]
public sealed class AgentLogTests(BatteryFixture fixture)
{
    // Eight times the bound: enough to pass it several times over, bounded in count (128 writes of 64 KiB).
    private const int Chunks = (int)(8 * BatteryFixture.AgentLogBound / (64 * 1024));

    [Fact]
    public async Task Writing_to_the_agents_stdout_cannot_grow_the_host_log_past_its_bound()
    {
        var script = $$"""
            import errno, os, sys
            paths = ["/proc/1/fd/1", "/proc/1/fd/2"]
            written = 0
            for path in paths:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
                except OSError as ex:
                    print(path + " BLOCKED " + errno.errorcode.get(ex.errno, str(ex.errno)))
                    continue
                chunk = (b"paddock-log-flood " * 4096)[:65536]
                for _ in range({{Chunks}}):
                    written += os.write(fd, chunk)
                os.close(fd)
                print(path + " WROTE")
            print("total", written)
            """;
        var result = await fixture.Attacker.RunAsync("python3 - <<'PADDOCK_PY'\n" + script + "\nPADDOCK_PY\n", "root", TimeSpan.FromSeconds(120));
        Assert.True(result.ExitCode == 0, "the flood script failed: " + result);

        var directory = SandboxDirectory(fixture.Attacker);
        var log = Path.Combine(directory, "agent.log");
        var rotated = log + ".1";
        if (fixture.Attacker.Isolation == "gvisor")
        {
            // Measured: the Sentry lets root open the agent's stdout; what it reaches is the pipe, not a host file.
            Assert.Contains("/proc/1/fd/1 WROTE", result.Stdout, StringComparison.Ordinal);
            Assert.Contains($"total {2L * Chunks * 65536}", result.Stdout, StringComparison.Ordinal);
            // The drain reads asynchronously: wait (bounded) until it rotated at least once, which it must after 16 MiB.
            // Wait for both files: a rotation swaps a new agent.log in and moves the old one to agent.log.1 after it.
            for (var i = 0; i < 100 && !(File.Exists(rotated) && File.Exists(log)); i++)
            {
                await Task.Delay(100);
            }
            Assert.True(File.Exists(rotated), "the drain never rotated agent.log after 16 MiB through the pipe");
            Assert.StartsWith("[paddock] ", await File.ReadAllTextAsync(log), StringComparison.Ordinal);
        }
        else
        {
            Assert.Matches("^/proc/1/fd/1 BLOCKED (EACCES|EPERM)\n/proc/1/fd/2 BLOCKED (EACCES|EPERM)\ntotal 0\n$", result.Stdout);
        }
        var logBytes = new FileInfo(log).Length;
        var rotatedBytes = File.Exists(rotated) ? new FileInfo(rotated).Length : 0;
        Assert.True(logBytes <= BatteryFixture.AgentLogBound, $"agent.log holds {logBytes} bytes, over the bound of {BatteryFixture.AgentLogBound}");
        Assert.True(rotatedBytes <= BatteryFixture.AgentLogBound, $"agent.log.1 holds {rotatedBytes} bytes, over the bound of {BatteryFixture.AgentLogBound}");
        Assert.False(File.Exists(log + ".2"), "a third log file appeared");
        await fixture.AssertHostUnchangedAsync();
        Assert.Equal("ok\n", (await fixture.Attacker.RunAsync("echo ok")).Stdout);
    }

    /// <summary>The sandbox's host directory under the daemon's state: the runc tier's or the gVisor tier's.</summary>
    private string SandboxDirectory(TestSandbox sandbox)
    {
        var directory = sandbox.Isolation == "gvisor"
            ? Path.Combine(fixture.Daemon.StateDir, "gvisor", "shared", "sandboxes", sandbox.Id)
            : Path.Combine(fixture.Daemon.StateDir, "sandboxes", sandbox.Id);
        Assert.True(Directory.Exists(directory), $"no sandbox directory at {directory}");
        return directory;
    }
}
