using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>Signal numbers (Linux x86-64 and aarch64 agree on these), kill(2), and the exec helper's signal reset.</summary>
internal static unsafe partial class Signals
{
    public const int SIGHUP = 1;
    public const int SIGINT = 2;
    public const int SIGQUIT = 3;
    public const int SIGILL = 4;
    public const int SIGTRAP = 5;
    public const int SIGABRT = 6;
    public const int SIGBUS = 7;
    public const int SIGFPE = 8;
    public const int SIGKILL = 9;
    public const int SIGUSR1 = 10;
    public const int SIGSEGV = 11;
    public const int SIGUSR2 = 12;
    public const int SIGPIPE = 13;
    public const int SIGALRM = 14;
    public const int SIGTERM = 15;
    public const int SIGCHLD = 17;
    public const int SIGSTOP = 19;

    private const int SIG_SETMASK = 2;
    private const nint SIG_DFL = 0;
    private const nint SIG_IGN = 1;
    private const int LastSignal = 64;

    /// <summary>
    /// kill(2). A negative <paramref name="pid"/> signals that process group, -1 every process the agent may signal.
    /// Returns 0 or the errno (ESRCH: nothing left to signal).
    /// </summary>
    public static int Send(int pid, int signal) => kill(pid, signal) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>
    /// For the exec helper, just before execve: dispositions set to SIG_IGN survive exec, and the .NET runtime of the
    /// helper ignores SIGPIPE; handled signals are reset by exec itself. Also unblocks every signal of this thread,
    /// since the mask survives exec too.
    /// </summary>
    public static void ResetForExec()
    {
        var action = stackalloc byte[256]; // struct sigaction is 152 bytes on glibc x86-64/aarch64; handler first
        for (var signal = 1; signal <= LastSignal; signal++)
        {
            if (signal is SIGKILL or SIGSTOP)
            {
                continue;
            }
            new Span<byte>(action, 256).Clear();
            if (sigaction(signal, null, action) == 0 && *(nint*)action == SIG_IGN)
            {
                _ = signal_(signal, SIG_DFL);
            }
        }
        var set = stackalloc byte[128];
        _ = Spawn.sigemptyset(set);
        _ = pthread_sigmask(SIG_SETMASK, set, null);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    // Fails (EINVAL) for the numbers glibc reserves (32, 33); those are skipped by the check on the result.
    [LibraryImport("libc", SetLastError = true)]
    private static partial int sigaction(int signal, void* action, void* oldAction);

    [LibraryImport("libc", EntryPoint = "signal")]
    private static partial nint signal_(int signal, nint handler);

    [LibraryImport("libc")]
    private static partial int pthread_sigmask(int how, void* set, void* oldSet);
}
