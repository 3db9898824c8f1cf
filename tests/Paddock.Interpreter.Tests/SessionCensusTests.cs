using System.Diagnostics;
using Paddock.Interpreter.Kernels;

namespace Paddock.Interpreter.Tests;

public sealed class SessionCensusTests
{
    /// <summary>setsid makes the shell a session leader (its pid is the session id); the script runs in it.</summary>
    private static Process StartSession(string script)
    {
        var start = new ProcessStartInfo("setsid") { ArgumentList = { "sh", "-c", script }, RedirectStandardOutput = true };
        return Process.Start(start)!;
    }

    private static async Task CleanUpAsync(Process process)
    {
        await SessionCensus.KillAllAsync(process.Id, CancellationToken.None);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await process.WaitForExitAsync(timeout.Token);
    }

    [Fact]
    public async Task Counts_the_processes_of_a_real_session_and_nothing_else()
    {
        using var process = StartSession("sleep 30 & sleep 30 & echo ready; wait");
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal("ready", await process.StandardOutput.ReadLineAsync(timeout.Token));
            var count = SessionCensus.Count(process.Id);
            Assert.Equal(3, count.Processes);
            Assert.Equal(3, count.Tasks); // sh and sleep are single-threaded
            Assert.Equal(new SessionCount(0, 0), SessionCensus.Count(int.MaxValue));
        }
        finally
        {
            await CleanUpAsync(process);
        }
    }

    [Fact]
    public async Task Kills_members_that_left_the_process_group_and_orphans_too()
    {
        // `set -m` gives each background job a process group of its own (job control), so the group kill alone
        // misses it; the orphan's parent exits at once, so it is re-parented and only the session still names it.
        using var process = StartSession("set -m; sleep 300 & sh -c 'sleep 300 & exit 0'; echo ready; wait");
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal("ready", await process.StandardOutput.ReadLineAsync(timeout.Token));
            Assert.True(SessionCensus.Count(process.Id).Processes >= 3);
            Assert.Equal(0, await SessionCensus.KillAllAsync(process.Id, timeout.Token));
            await process.WaitForExitAsync(timeout.Token);
            // Zombies may remain until their new parent (this test's reaper, or init) reaps them; none is alive.
            for (var i = 0; i < 100 && SessionCensus.Count(process.Id).Processes > 0; i++)
            {
                await Task.Delay(20, timeout.Token);
            }
            Assert.Equal(0, SessionCensus.Count(process.Id).Processes);
        }
        finally
        {
            await CleanUpAsync(process);
        }
    }

    [Fact]
    public async Task The_watchdog_fires_once_a_running_cell_forks_past_the_limit()
    {
        // 12 children against a limit of 6 processes: a bounded stand-in for a fork bomb.
        using var process = StartSession("echo ready; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 300 & done; wait");
        var fired = new TaskCompletionSource<SessionCount>(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal("ready", await process.StandardOutput.ReadLineAsync(timeout.Token));
            using var watchdog = new ProcessWatchdog(process.Id, new ProcessLimits(512, 6, 384), verdict => fired.TrySetResult(verdict.Count));
            watchdog.CellStarted();
            var count = await fired.Task.WaitAsync(timeout.Token);
            Assert.True(count.Processes > 6, $"fired at {count.Processes} processes");
        }
        finally
        {
            await CleanUpAsync(process);
        }
    }

    [Fact]
    public async Task The_watchdog_stays_quiet_for_a_session_within_its_limit()
    {
        using var process = StartSession("sleep 300 & sleep 300 & echo ready; wait");
        var fired = false;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal("ready", await process.StandardOutput.ReadLineAsync(timeout.Token));
            using (var watchdog = new ProcessWatchdog(process.Id, new ProcessLimits(512, 6, 384), _ => fired = true))
            {
                watchdog.CellStarted();
                // Ten census periods of a running cell: a wait for an event that must not happen, not a timing claim.
                await Task.Delay(ProcessWatchdog.BusyInterval * 10, timeout.Token);
                watchdog.CellEnded();
            }
            Assert.False(fired);
            Assert.Equal(3, SessionCensus.Count(process.Id).Processes);
        }
        finally
        {
            await CleanUpAsync(process);
        }
    }
}
