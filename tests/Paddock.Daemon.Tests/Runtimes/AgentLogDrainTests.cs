using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>The bounded drain of a sandbox's output FIFO, with a real FIFO and a writer of the test's own.</summary>
public sealed class AgentLogDrainTests : IDisposable
{
    private const long Bound = 64 * 1024;

    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("paddock-logdrain-");

    private sealed record Directories(string SandboxesDirectory, string NetnsDirectory) : ISandboxDirectories;

    private SandboxLayout Layout()
    {
        var layout = new SandboxLayout(new Directories(_root.FullName, _root.FullName), "s-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(layout.Directory);
        return layout;
    }

    [Fact]
    public void Output_past_the_bound_rotates_once_per_bound_and_keeps_the_newest()
    {
        using var drain = new AgentLogDrain(Bound, NullLogger.Instance);
        var layout = Layout();
        var fifo = drain.Open(layout);
        using (var writer = new FileStream(fifo, FileMode.Open, FileAccess.Write))
        {
            // Five bounds' worth, in lines that say where they were, each write within the pipe's 64 KiB buffer.
            for (var i = 0; i < 5 * Bound / 8192; i++)
            {
                writer.Write(System.Text.Encoding.ASCII.GetBytes($"line {i:D6} ".PadRight(8191, 'x') + "\n"));
                writer.Flush();
                drain.Flush(layout.SandboxId);
            }
        }
        drain.Flush(layout.SandboxId);

        var log = File.ReadAllText(layout.LogFile);
        var rotated = File.ReadAllText(AgentLogDrain.RotatedLogPath(layout));
        Assert.True(new FileInfo(layout.LogFile).Length <= Bound);
        Assert.True(new FileInfo(AgentLogDrain.RotatedLogPath(layout)).Length <= Bound);
        Assert.StartsWith("[paddock] ", log, StringComparison.Ordinal);
        Assert.StartsWith("[paddock] ", rotated, StringComparison.Ordinal);
        // The newest line is kept (split across the two files when the bound fell inside it), the oldest dropped.
        Assert.Contains($"line {5 * Bound / 8192 - 1:D6}", rotated + log, StringComparison.Ordinal);
        Assert.EndsWith("x\n", log, StringComparison.Ordinal);
        Assert.DoesNotContain("line 000000", log + rotated, StringComparison.Ordinal);
        Assert.False(File.Exists(layout.LogFile + ".2"));
    }

    [Fact]
    public void A_reader_of_agent_log_finds_it_through_every_rotation()
    {
        using var drain = new AgentLogDrain(Bound, NullLogger.Instance);
        var layout = Layout();
        var fifo = drain.Open(layout);
        drain.Flush(layout.SandboxId);
        using (var first = new FileStream(fifo, FileMode.Open, FileAccess.Write))
        {
            first.Write("start\n"u8);
        }
        drain.Flush(layout.SandboxId);
        Assert.True(File.Exists(layout.LogFile));

        // A watcher looks for agent.log as fast as it can while the drain rotates it 40 times.
        var missing = 0;
        var looks = 0;
        using var done = new ManualResetEventSlim();
        var watcher = new Thread(() =>
        {
            for (var i = 0; i < 10_000_000 && !done.IsSet; i++)
            {
                looks++;
                if (!File.Exists(layout.LogFile))
                {
                    missing++;
                }
            }
        });
        watcher.Start();
        using (var writer = new FileStream(fifo, FileMode.Open, FileAccess.Write))
        {
            for (var i = 0; i < 40 * Bound / 8192; i++)
            {
                writer.Write(System.Text.Encoding.ASCII.GetBytes("x".PadRight(8191, 'x') + "\n"));
                writer.Flush();
                drain.Flush(layout.SandboxId);
            }
        }
        done.Set();
        Assert.True(watcher.Join(TimeSpan.FromSeconds(30)), "the watcher did not stop");

        Assert.True(looks > 0);
        Assert.Equal(0, missing);
        Assert.StartsWith("[paddock] ", File.ReadAllText(layout.LogFile), StringComparison.Ordinal);
        Assert.True(new FileInfo(AgentLogDrain.RotatedLogPath(layout)).Length <= Bound);
        Assert.Equal(new[] { "agent.log", "agent.log.1" }, Directory.GetFiles(layout.Directory, "agent.log*").Select(f => Path.GetFileName(f)).Order().ToArray());
    }

    [Fact]
    public void A_writer_gets_EPIPE_while_no_drain_reads_and_is_drained_again_by_a_new_one()
    {
        var layout = Layout();
        var first = new AgentLogDrain(Bound, NullLogger.Instance);
        var fifo = first.Open(layout);
        using var writer = new FileStream(fifo, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, bufferSize: 0);
        writer.Write("before\n"u8);
        first.Flush(layout.SandboxId);
        first.Dispose(); // the daemon is gone: no reader

        // .NET's FileStream reports EPIPE as an IOException (and the runtime ignores SIGPIPE, as in the agent).
        var error = Assert.ThrowsAny<IOException>(() => writer.Write("during\n"u8));
        Assert.Contains("pipe", error.Message, StringComparison.OrdinalIgnoreCase);

        using var second = new AgentLogDrain(Bound, NullLogger.Instance);
        second.Adopt(layout);
        Assert.True(second.IsOpen(layout.SandboxId));
        writer.Write("after\n"u8);
        second.Flush(layout.SandboxId);
        Assert.Equal("before\nafter\n", File.ReadAllText(layout.LogFile));
    }

    [Fact]
    public void A_bound_below_the_minimum_is_refused()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new AgentLogDrain(100, NullLogger.Instance));
        Assert.Contains("at least 4096", error.Message, StringComparison.Ordinal);
    }

    public void Dispose() => _root.Delete(recursive: true);
}
