using System.Runtime.InteropServices;
using System.Threading.Channels;
using Paddock.Agent.Native;

namespace Paddock.Agent.Processes;

/// <summary>
/// Reaps every child of the agent: waitpid(-1, WNOHANG) on every SIGCHLD (on the runtime's signal thread) and in a
/// periodic sweep. Exit statuses of the processes the agent started go to their waiters; any other child is an
/// orphan reparented to the agent (it is PID 1 in a container, and a child subreaper elsewhere) and is reaped
/// silently so it does not stay a zombie.
/// </summary>
/// <remarks>
/// Spawning and reaping share one lock: a child can exit before posix_spawn has even returned its pid, and without
/// the lock the loop could reap it as an unknown orphan and lose the status. Holding it costs a vfork (about a
/// millisecond). Nothing else in the agent may wait for children: System.Diagnostics.Process is not used anywhere
/// (its own SIGCHLD handling would race this loop for the statuses), and the runtime's habit of reaping every child
/// when it is PID 1 is switched off by taking its SIGCHLD hook (<see cref="ChildWait.TakeRuntimeSigChld"/>).
/// </remarks>
internal sealed class ChildReaper : IDisposable
{
    // A periodic sweep besides SIGCHLD costs one syscall; it bounds the damage of any wake-up lost in between.
    // Its timer runs only while a started process is awaited: in an idle agent it was a third of the wake-ups
    // (issue 6: each one woke the timer thread, a pool worker and the pool's gate thread). Orphans are reaped at
    // their SIGCHLD either way.
    private static readonly TimeSpan SweepInterval = TimeSpan.FromSeconds(5);

    private readonly Lock _gate = new();
    private readonly Dictionary<int, TaskCompletionSource<ExitStatus>> _waiters = [];
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stopping = new();
    private readonly PosixSignalRegistration? _sigchld;
    private readonly ILogger<ChildReaper> _logger;
    private readonly Task _loop;
    private readonly ITimer _sweep;

    public ChildReaper(ILogger<ChildReaper> logger)
    {
        _logger = logger;
        IsInit = ChildWait.ProcessId() == 1;
        if (!IsInit)
        {
            var rc = ChildWait.BecomeSubreaper();
            if (rc != 0)
            {
                ProcessLog.SubreaperFailed(_logger, Errno.Message(rc));
            }
        }
        // The public registration first: it also initialises the runtime's signal handling, which the hook below
        // needs (registering it before that dereferences the runtime's unallocated handler table: measured, SIGSEGV).
        var registration = OperatingSystem.IsLinux()
            ? PosixSignalRegistration.Create(PosixSignal.SIGCHLD, _ => _wake.Writer.TryWrite(true))
            : throw new PlatformNotSupportedException("the agent reaps children through Linux's SIGCHLD");
        if (ChildWait.TakeRuntimeSigChld(ReapOnSignalThread))
        {
            // The hook reaps on the runtime's signal thread itself. The public registration would queue a thread-pool
            // work item on every SIGCHLD besides (PosixSignalRegistration.Unix.cs), one more wake-up per command for
            // nothing. Disposed, it leaves the runtime's handler installed: pal_signal.c's
            // SystemNative_DisablePosixSignalHandling keeps SIGCHLD's handler while a SIGCHLD callback is set.
            registration.Dispose();
        }
        else
        {
            _sigchld = registration;
            ProcessLog.RuntimeSigChldUnavailable(_logger, IsInit);
        }
        _sweep = TimeProvider.System.CreateTimer(static state => ((ChildReaper)state!).OnSweep(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        // Called, not queued with Task.Run: it runs here up to its first wait on the empty channel, so the agent's
        // start queues no thread-pool work for it, and a pool worker is not started for it before the agent listens
        // (each thread start spins in sched_yield until the thread runs: see OutputPoller.EnsureStarted).
        _loop = LoopAsync();
    }

    /// <summary>True when the agent is PID 1 (a container's init): it then also owns every orphan's shutdown.</summary>
    public bool IsInit { get; }

    /// <summary>
    /// Runs <paramref name="spawn"/> (which returns the new child's pid or throws) under the reaper's lock and
    /// returns the child's pid with a task for its exit status.
    /// </summary>
    public (int Pid, Task<ExitStatus> Exit) Spawn(Func<int> spawn)
    {
        lock (_gate)
        {
            var pid = spawn();
            var waiter = new TaskCompletionSource<ExitStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add(pid, waiter);
            if (_waiters.Count == 1)
            {
                _sweep.Change(SweepInterval, Timeout.InfiniteTimeSpan);
            }
            return (pid, waiter.Task);
        }
    }

    /// <summary>
    /// SIGCHLD through the runtime's hook, on its signal thread: reaps there, so an exit status reaches its waiter
    /// without first waking the loop on the thread pool (each wake-up costs tens of microseconds of CPU on this
    /// project's VMs and, under load, a wait for a core). The waiters' continuations run on the thread pool
    /// (<see cref="TaskCreationOptions.RunContinuationsAsynchronously"/>), never on the signal thread. The lock may
    /// hold this thread for the length of a posix_spawn.
    /// </summary>
    private void ReapOnSignalThread()
    {
        try
        {
            ReapAll();
        }
        catch (Exception ex)
        {
            // The signal thread must go on: every later signal (SIGTERM included) is dispatched by it.
            ProcessLog.ReaperFailed(_logger, ex);
        }
    }

    private async Task LoopAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                await _wake.Reader.ReadAsync(_stopping.Token);
            }
            catch (OperationCanceledException)
            {
                // shutdown (checked by the loop)
            }
            try
            {
                ReapAll();
            }
            catch (Exception ex)
            {
                // A bug here must not end the loop: every later child would then stay a zombie.
                ProcessLog.ReaperFailed(_logger, ex);
            }
        }
    }

    private void ReapAll()
    {
        List<(TaskCompletionSource<ExitStatus> Waiter, ExitStatus Status)>? finished = null;
        lock (_gate)
        {
            // Each iteration reaps one zombie or stops; the bound only guards against a kernel that never says ECHILD.
            for (var i = 0; i < 1_000_000; i++)
            {
                var pid = ChildWait.TryReapAny(out var raw, out var errno);
                if (pid > 0)
                {
                    var status = ExitStatus.FromWaitStatus(raw);
                    if (_waiters.Remove(pid, out var waiter))
                    {
                        (finished ??= []).Add((waiter, status));
                    }
                    else
                    {
                        ProcessLog.OrphanReaped(_logger, pid, status.Text);
                    }
                    continue;
                }
                if (pid < 0 && errno == Errno.EINTR)
                {
                    continue;
                }
                if (pid < 0 && errno != Errno.ECHILD)
                {
                    ProcessLog.WaitFailed(_logger, Errno.Message(errno));
                }
                break;
            }
        }
        if (finished is not null)
        {
            foreach (var (waiter, status) in finished)
            {
                waiter.TrySetResult(status);
            }
        }
    }

    /// <summary>The sweep: a pass of the loop, and the next one while a started process is still awaited.</summary>
    private void OnSweep()
    {
        _wake.Writer.TryWrite(true);
        lock (_gate)
        {
            if (_waiters.Count > 0)
            {
                _sweep.Change(SweepInterval, Timeout.InfiniteTimeSpan);
            }
        }
    }

    public void Dispose()
    {
        _sweep.Dispose();
        _stopping.Cancel();
        _sigchld?.Dispose();
        _ = _loop.ContinueWith(_ => _stopping.Dispose(), TaskScheduler.Default);
    }
}
