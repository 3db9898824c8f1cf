using System.Diagnostics;
using Paddock.Interpreter.Kernels;

namespace Paddock.Interpreter.Tests;

public sealed class SessionCensusTests
{
    /// <summary>setsid makes the shell a session leader (its pid is the session id); the script runs in it.</summary>
    private static Process StartSession(string script)
    {
        var start = new ProcessStartInfo("setsid") { ArgumentList = { "sh", "-c", script }, RedirectStandardOutput = true, RedirectStandardInput = true };
        return Process.Start(start)!;
    }

    /// <summary>A sandbox of 512 MiB with 50 MiB available: under its floor (102 MiB).</summary>
    private static SandboxMemory? LowMemory() => new SandboxMemory(512L << 20, 50L << 20);

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
    public async Task A_census_asked_to_stop_past_a_limit_stops_there_and_says_so()
    {
        using var process = StartSession("for i in 1 2 3 4 5 6 7 8; do sleep 30 & done; echo ready; wait");
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal("ready", await process.StandardOutput.ReadLineAsync(timeout.Token));
            Assert.Equal(new SessionCount(9, 9), SessionCensus.Count(process.Id));
            Assert.Equal(new SessionCount(4, 4, Partial: true), SessionCensus.Count(process.Id, stopPastProcesses: 3));
            Assert.Equal(new SessionCount(3, 3, Partial: true), SessionCensus.Count(process.Id, stopPastTasks: 2));
            Assert.Equal(new SessionCount(9, 9), SessionCensus.Count(process.Id, stopPastProcesses: 9, stopPastTasks: 9));
            var limits = new ProcessLimits(512, 5, 384);
            Assert.True(limits.Exceeded(limits.Census(process.Id)));
            Assert.StartsWith("the cell's processes exceeded the kernel's process limit: at least 6 processes (6 threads)", limits.Describe(limits.Census(process.Id)));
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
            // The watchdog's census stops at the first process past the limit (its cost must not grow with a bomb).
            Assert.Equal(new SessionCount(7, 7, Partial: true), count);
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

    [Fact]
    public async Task The_watchdog_kills_a_session_that_forked_while_memory_is_under_the_floor()
    {
        // Two children, far under the process limit: the memory reading is what passes its limit.
        using var process = StartSession("echo ready; read go; sleep 300 & sleep 300 & wait");
        var fired = new TaskCompletionSource<WatchdogVerdict>(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal("ready", await process.StandardOutput.ReadLineAsync(timeout.Token));
            using var watchdog = new ProcessWatchdog(process.Id, new ProcessLimits(512, 64, 384), v => fired.TrySetResult(v), LowMemory);
            watchdog.CellStarted();
            await process.StandardInput.WriteLineAsync("go");
            await process.StandardInput.FlushAsync(timeout.Token);
            var verdict = await fired.Task.WaitAsync(timeout.Token);
            Assert.Equal(3, verdict.Count.Processes);
            Assert.Equal(50L << 20, verdict.Memory?.AvailableBytes);
            Assert.Contains("50 MiB of 512 MiB", verdict.Describe(new ProcessLimits(512, 64, 384)));
        }
        finally
        {
            await CleanUpAsync(process);
        }
    }

    [Fact]
    public async Task The_memory_floor_leaves_alone_a_session_with_one_child()
    {
        // One subprocess (a cell running a command) is not a fork: the floor needs two processes beyond the start.
        using var process = StartSession("echo ready; read go; sleep 300 & wait");
        var fired = false;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal("ready", await process.StandardOutput.ReadLineAsync(timeout.Token));
            using (var watchdog = new ProcessWatchdog(process.Id, new ProcessLimits(512, 64, 384), _ => fired = true, LowMemory))
            {
                watchdog.CellStarted();
                await process.StandardInput.WriteLineAsync("go");
                await process.StandardInput.FlushAsync(timeout.Token);
                for (var i = 0; i < 100 && SessionCensus.Count(process.Id).Processes < 2; i++)
                {
                    await Task.Delay(50, timeout.Token);
                }
                // Ten census periods with the child there: a wait for an event that must not happen.
                await Task.Delay(ProcessWatchdog.BusyInterval * 10, timeout.Token);
                watchdog.CellEnded();
            }
            Assert.False(fired);
            Assert.Equal(2, SessionCensus.Count(process.Id).Processes);
        }
        finally
        {
            await CleanUpAsync(process);
        }
    }

    [Fact]
    public void A_bash_kernel_in_a_small_sandbox_gets_its_allowance_over_the_users_tasks_now()
    {
        var gvisor = new ProcessLimits(256, 32, 128, 64);
        Assert.Equal(100 + 64, gvisor.KernelRlimit(shell: true, () => 100));
        Assert.Equal(256, gvisor.KernelRlimit(shell: true, () => 230)); // never above the common limit
        Assert.Equal(256, gvisor.KernelRlimit(shell: false, () => throw new InvalidOperationException("not asked")));
        var runc = new ProcessLimits(512, 64, 256);
        Assert.Equal(512, runc.KernelRlimit(shell: true, () => throw new InvalidOperationException("not asked")));
        Assert.Equal(70, new ProcessLimits(0, 64, 256, 64).KernelRlimit(shell: true, () => 6));
    }

    [Fact]
    public async Task Counts_the_users_tasks_as_rlimit_nproc_does()
    {
        var before = SessionCensus.UserTasks();
        Assert.True(before >= 2, $"this test process alone has several threads: {before}");
        using var process = StartSession("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 30 & done; echo ready; wait");
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal("ready", await process.StandardOutput.ReadLineAsync(timeout.Token));
            // Eleven more single-threaded processes of this user; this process's pool threads and other tests'
            // processes may come and go meanwhile, hence the range.
            Assert.InRange(SessionCensus.UserTasks() - before, 11 - 4, 11 + 64);
        }
        finally
        {
            await CleanUpAsync(process);
        }
    }

    [Fact]
    public void Reads_meminfo_as_gVisor_writes_it_and_derives_the_floor_and_the_default_limits()
    {
        // The first lines of /proc/meminfo in a 512 MiB gVisor sandbox (measured 2026-12-07).
        var memory = SandboxMemory.Parse("MemTotal:         524288 kB\nMemFree:          248156 kB\nMemAvailable:     248156 kB\nBuffers:               0 kB\n");
        Assert.Equal(new SandboxMemory(512L << 20, 248156L * 1024), memory);
        Assert.Equal(524288L * 1024 / 5, memory!.Value.FloorBytes);
        Assert.False(memory.Value.BelowFloor);
        Assert.Equal(128L << 20, new SandboxMemory(24L << 30, 1L << 30).FloorBytes);
        Assert.Null(SandboxMemory.Parse("MemTotal: 1024 kB\n"));
        if (Environment.GetEnvironmentVariable("PADDOCK_INTERP_MAX_PROCS") is null)
        {
            // A bash kernel's allowance over the user's tasks: 64 in 512 MiB, at least 32, none where the host's memory shows.
            Assert.Equal(new ProcessLimits(256, 32, 128, 64), ProcessLimits.FromEnvironment(memory));
            Assert.Equal(new ProcessLimits(64, 8, 32, 32), ProcessLimits.FromEnvironment(new SandboxMemory(128L << 20, 100L << 20)));
            Assert.Equal(new ProcessLimits(512, 64, 256), ProcessLimits.FromEnvironment(new SandboxMemory(24L << 30, 20L << 30)));
            Assert.Equal(new ProcessLimits(512, 64, 256), ProcessLimits.FromEnvironment(null));
        }
    }
}
