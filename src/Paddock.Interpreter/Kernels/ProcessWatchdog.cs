namespace Paddock.Interpreter.Kernels;

/// <summary>The per-kernel process limits: <c>PADDOCK_INTERP_MAX_PROCS</c> and the watchdog's share of it.</summary>
internal sealed record ProcessLimits(int UserTasks, int SessionProcesses, int SessionTasks, int ShellAllowance = 0)
{
    /// <summary>The memory per task the default RLIMIT_NPROC allows for: 2 MiB, four times a sleeping process on gVisor.</summary>
    private const long TaskMemory = 2L << 20;

    /// <summary>The memory per task a bash kernel's allowance is sized by: 8 MiB, so 64 tasks in a 512 MiB sandbox.</summary>
    private const long ShellTaskMemory = 8L << 20;

    /// <summary>
    /// RLIMIT_NPROC of kernels (<c>PADDOCK_INTERP_MAX_PROCS</c>, default 512 or less, see below; 0: none). The kernel counts it per user
    /// and in tasks (threads included), so a fork bomb stalls once the user's tasks reach it. The watchdog acts on a
    /// session that holds more than an eighth of it in processes, or half of it in tasks: the user's other
    /// processes (this server's threads, other contexts' kernels) share the allowance, and a fork bomb's copies of
    /// ipykernel hold ~3.5 threads each (measured 2026-12-06: the bomb stalled at 103 processes, 368 tasks).
    /// </summary>
    /// <remarks>
    /// The default is lower where the memory /proc/meminfo shows is small: one task per 2 MiB of MemTotal, so 256 in a
    /// 512 MiB gVisor sandbox (there MemTotal is the sandbox's limit). A process costs a gVisor sandbox's memory
    /// cgroup about 0.55 MiB even when it only sleeps (100 background <c>sleep</c>s of a bash cell: +36 MiB by 66 of
    /// them, measured 2026-12-07), and a bash <c>:(){ :|:&amp; };:</c> keeps the sandbox so busy that the watchdog's
    /// census comes too late: under 512 it grew the memory cgroup by ~20 MiB/s to its 512 MiB limit, and the host's
    /// OOM killer ended the sandbox. On the runc tier MemTotal is the host's and the default stays 512.
    /// </remarks>
    public static ProcessLimits FromEnvironment(SandboxMemory? memory)
    {
        var fallback = memory is { TotalBytes: > 0 } m ? (int)Math.Clamp(m.TotalBytes / TaskMemory, 64, 512) : 512;
        var nproc = int.TryParse(Environment.GetEnvironmentVariable("PADDOCK_INTERP_MAX_PROCS"), out var n) && n >= 0 ? n : fallback;
        // With no rlimit the watchdog still needs a bound: the default's.
        var basis = nproc > 0 ? nproc : 512;
        // Where /proc/meminfo shows the host's memory (runc) or none, the allowance would not be under the limit: none.
        var shell = memory is { TotalBytes: > 0 } s ? Math.Min(s.TotalBytes / ShellTaskMemory, int.MaxValue) : long.MaxValue;
        return new ProcessLimits(nproc, Math.Max(basis / 8, 8), Math.Max(basis / 2, 16), shell >= basis ? 0 : (int)Math.Max(shell, 32));
    }

    /// <summary>
    /// RLIMIT_NPROC for a kernel started now: <see cref="UserTasks"/>, and for a bash kernel in a sandbox with little
    /// memory no more than the user's tasks now plus <see cref="ShellAllowance"/>. Why: on gVisor a bash
    /// <c>:(){ :|:&amp; };:</c> under the common limit (256 there) grew to 118-250 processes before the watchdog's census
    /// ran (it competes with the bomb for the Sentry: the kill came 6-10 s after the bomb started, or never when the
    /// bomb died out first), and each process cost the sandbox's memory cgroup ~0.9 MiB, a third of it the Sentry's
    /// own heap, which it kept after the bomb (measured 2026-12-07: +30 to +80 MiB of Sentry RSS afterwards). A bomb
    /// stalled at the allowance sleeps in bash's fork retries, and the census then finds it. 0: no rlimit.
    /// </summary>
    public int KernelRlimit(bool shell, Func<int> userTasksNow)
    {
        if (!shell || ShellAllowance <= 0)
        {
            return UserTasks;
        }
        var tight = userTasksNow() + ShellAllowance;
        return UserTasks > 0 ? Math.Min(UserTasks, tight) : tight;
    }

    public bool Exceeded(SessionCount count) => count.Processes > SessionProcesses || count.Tasks > SessionTasks;

    /// <summary>A census that stops as soon as this limit is passed (<see cref="SessionCensus.Count"/> says why).</summary>
    public SessionCount Census(int sessionId) => SessionCensus.Count(sessionId, SessionProcesses, SessionTasks);

    public string Describe(SessionCount count) =>
        $"the cell's processes exceeded the kernel's process limit: {(count.Partial ? "at least " : "")}{count.Processes} processes ({count.Tasks} threads) in its session, " +
        $"the limit is {SessionProcesses} processes or {SessionTasks} threads (PADDOCK_INTERP_MAX_PROCS={UserTasks}; a fork bomb?)";

    public string Describe(SessionCount count, SandboxMemory memory) =>
        $"the cell's processes exceeded the kernel's process limit: {count.Processes} processes ({count.Tasks} threads) in its session " +
        $"left {memory} of memory available, under the floor of {memory.FloorBytes >> 20} MiB for a session that forks (a fork bomb?)";
}

/// <summary>Why the watchdog fired: the census, and the memory reading when the memory floor was the limit passed.</summary>
internal readonly record struct WatchdogVerdict(SessionCount Count, SandboxMemory? Memory)
{
    public string Describe(ProcessLimits limits) => Memory is { } memory ? limits.Describe(Count, memory) : limits.Describe(Count);
}

/// <summary>
/// Watches a kernel's session for a fork bomb. RLIMIT_NPROC alone stops a bomb from growing but not from holding its
/// pids for ever: measured 2026-12-06 (runc tier), a Python <c>while True: os.fork()</c> cell never ended, its
/// forked ipykernel copies (many zombies, a few in D state) held the user's whole allowance for minutes, and a
/// census taken only after a failed cell never ran. So while a cell runs, and for a while after it (a bash cell's
/// <c>:(){ :|:&amp; };:</c> returns at once and forks in the background) as long as the session holds more
/// processes than the kernel had when it became ready, the session is counted every <see cref="BusyInterval"/>
/// (every <see cref="BackgroundInterval"/> once the cell ended over 2 s ago); a count over the limit calls
/// <c>onExceeded</c> once. A cell that ends within one interval and leaves nothing behind costs one census after
/// its reply, off the reply's path; an idle kernel costs nothing.
/// <para>
/// Memory is the other limit, for gVisor: there a forked copy of a kernel is expensive (the Sentry breaks
/// copy-on-write in 2 MiB units: a forked ipykernel that only sleeps cost the sandbox's memory cgroup 40-52 MiB,
/// measured 2026-12-07) and the sandbox's memory runs out long before its process count matters; the host's OOM
/// killer then kills the Sentry and with it the whole sandbox. So while the session holds at least
/// <see cref="ForkedProcesses"/> processes more than at start, each census also reads /proc/meminfo (the
/// sandbox's own memory there) and a reading under <see cref="SandboxMemory.FloorBytes"/> calls <c>onExceeded</c>.
/// </para>
/// </summary>
internal sealed class ProcessWatchdog : IDisposable
{
    /// <summary>The census period while a cell runs or just ran: a bomb stalls at RLIMIT_NPROC within this.</summary>
    public static readonly TimeSpan BusyInterval = TimeSpan.FromMilliseconds(50);

    /// <summary>How long after a cell the busy period lasts (a background bomb starts within it).</summary>
    private static readonly TimeSpan AfterCell = TimeSpan.FromSeconds(2);

    /// <summary>The census period while background processes a cell left run on (a server it started).</summary>
    private static readonly TimeSpan BackgroundInterval = TimeSpan.FromSeconds(1);

    private readonly int _sessionId;
    private readonly ProcessLimits _limits;
    /// <summary>Processes beyond the baseline from which the memory floor applies: a fork, not one subprocess.</summary>
    public const int ForkedProcesses = 2;

    private readonly Action<WatchdogVerdict> _onExceeded;
    private readonly Func<SandboxMemory?> _readMemory;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly int _baseline;
    private int _cellsRunning;
    private long _lastCellEnd;

    /// <param name="readMemory">The sandbox's memory now (<see cref="SandboxMemory.Read"/> unless a test gives its own).</param>
    public ProcessWatchdog(int sessionId, ProcessLimits limits, Action<WatchdogVerdict> onExceeded, Func<SandboxMemory?>? readMemory = null)
    {
        _sessionId = sessionId;
        _limits = limits;
        _onExceeded = onExceeded;
        _readMemory = readMemory ?? SandboxMemory.Read;
        _baseline = SessionCensus.Count(sessionId).Processes;
        _ = Task.Run(LoopAsync);
    }

    public void CellStarted()
    {
        Interlocked.Increment(ref _cellsRunning);
        Wake();
    }

    public void CellEnded()
    {
        Interlocked.Exchange(ref _lastCellEnd, Environment.TickCount64);
        Interlocked.Decrement(ref _cellsRunning);
    }

    public void Dispose()
    {
        _stop.Cancel();
    }

    private void Wake()
    {
        try
        {
            _wake.Release();
        }
        catch (SemaphoreFullException)
        {
            // Already woken.
        }
    }

    private async Task LoopAsync()
    {
        var token = _stop.Token;
        try
        {
            // Ends with the kernel (Dispose) or once the limit was exceeded; each wait is bounded by the interval.
            while (!token.IsCancellationRequested)
            {
                await _wake.WaitAsync(token);
                var watching = true;
                while (watching)
                {
                    var busy = Volatile.Read(ref _cellsRunning) > 0 || Environment.TickCount64 - Interlocked.Read(ref _lastCellEnd) < AfterCell.TotalMilliseconds;
                    await Task.Delay(busy ? BusyInterval : BackgroundInterval, token);
                    var count = _limits.Census(_sessionId);
                    if (_limits.Exceeded(count))
                    {
                        _onExceeded(new WatchdogVerdict(count, null));
                        return;
                    }
                    if (count.Processes >= _baseline + ForkedProcesses && _readMemory() is { BelowFloor: true } memory)
                    {
                        _onExceeded(new WatchdogVerdict(count, memory));
                        return;
                    }
                    watching = Volatile.Read(ref _cellsRunning) > 0 || count.Processes > _baseline;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The kernel is gone.
        }
    }
}
