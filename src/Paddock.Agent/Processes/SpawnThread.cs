using Paddock.Agent.Native;

namespace Paddock.Agent.Processes;

/// <summary>
/// The one thread that runs every posix_spawn of the agent, so that every process a caller starts is created by
/// the same kernel task.
/// </summary>
/// <remarks>
/// Why: in cgroup v1 a thread can sit in another cgroup than the rest of its process, and a child created by
/// clone/vfork starts in the cgroup of the <i>thread</i> that created it. The runc tier puts this thread (found by
/// its comm, <see cref="Name"/>) into a child cgroup of the sandbox's pids cgroup, whose pids.max is the sandbox's
/// limit, while the agent's other threads stay in the parent, which has a reserve on top. A fork flood then fills
/// the child cgroup only, and the runtime can still create the threads the agent needs (before this, a flood that
/// held every pid killed the agent: .NET dies when it cannot create a thread). Outside such a sandbox (no cgroup
/// move) this thread changes nothing but where posix_spawn runs.
/// The thread must never create a thread itself, or that thread would land in the child cgroup: it runs no async
/// continuation and touches no thread pool, timer or Task. Callers block on a <see cref="ManualResetEventSlim"/>
/// that this thread sets; completing a Task here instead could make the thread pool start a worker thread on this
/// thread. A spawn is a vfork and an exec (about a millisecond), so the caller's blocked pool thread is short-lived.
/// </remarks>
internal sealed class SpawnThread
{
    /// <summary>The thread's comm (at most 15 bytes), which the runc tier looks for in /proc/PID/task/*/comm.</summary>
    public const string Name = "paddock-spawn";

    private static readonly Lazy<SpawnThread> Instance = new(() => new SpawnThread(), LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly object _gate = new();
    private readonly Queue<Job> _jobs = new();

    private SpawnThread()
    {
        using var named = new ManualResetEventSlim(false);
        var nameError = 0;
        var thread = new Thread(() =>
        {
            nameError = Threads.SetCurrentName(Name);
            ThreadId = Threads.CurrentId();
            named.Set();
            Loop();
        })
        {
            IsBackground = true,
            Name = Name,
        };
        thread.Start();
        // The name must be in place before the agent answers /health: the runc tier looks for it right after.
        named.Wait();
        if (nameError != 0)
        {
            throw new InvalidOperationException($"cannot name the spawn thread: {Errno.Message(nameError)}");
        }
    }

    /// <summary>The process's spawn thread, started (and named) on first use.</summary>
    public static SpawnThread Shared => Instance.Value;

    /// <summary>The thread's kernel id (TID).</summary>
    public int ThreadId { get; private set; }

    /// <summary>
    /// Runs <paramref name="spawn"/> (a posix_spawn, with whatever must happen on the same thread around it: the
    /// credential switch of a start as another user) on this thread and returns its result. Blocks the caller until it
    /// returned; an exception thrown there is rethrown here. <paramref name="spawn"/> must be synchronous and must not
    /// create threads or touch the thread pool (see the remarks on this class).
    /// </summary>
    public int Run(Func<int> spawn)
    {
        using var job = new Job(spawn);
        lock (_gate)
        {
            _jobs.Enqueue(job);
            Monitor.Pulse(_gate);
        }
        job.Done.Wait();
        if (job.Error is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(job.Error);
        }
        return job.Result;
    }

    private void Loop()
    {
        // Runs for the life of the process (a background thread): the agent has one and never stops it.
        while (true)
        {
            Job job;
            lock (_gate)
            {
                while (_jobs.Count == 0)
                {
                    Monitor.Wait(_gate);
                }
                job = _jobs.Dequeue();
            }
            try
            {
                job.Result = job.Spawn();
            }
            catch (Exception ex)
            {
                job.Error = ex;
            }
            job.Done.Set();
        }
    }

    private sealed class Job(Func<int> spawn) : IDisposable
    {
        public Func<int> Spawn { get; } = spawn;

        // No spinning before the caller sleeps: a spawn lasts until the child has exec'd (milliseconds on these
        // VMs), longer than any spin, and the spin's sched_yield calls took the cores the spawn and the child need
        // (strace -f of a `true` round trip: the waiting thread yielded throughout the spawn).
        public ManualResetEventSlim Done { get; } = new(false, spinCount: 0);

        public int Result { get; set; }

        public Exception? Error { get; set; }

        public void Dispose() => Done.Dispose();
    }
}
