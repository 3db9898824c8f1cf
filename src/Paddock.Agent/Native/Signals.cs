using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>Signal numbers (Linux x86-64 and aarch64 agree on these) and kill(2).</summary>
internal static partial class Signals
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

    /// <summary>
    /// kill(2). A negative <paramref name="pid"/> signals that process group, -1 every process the agent may signal.
    /// Returns 0 or the errno (ESRCH: nothing left to signal).
    /// </summary>
    public static int Send(int pid, int signal) => kill(pid, signal) == 0 ? 0 : Marshal.GetLastPInvokeError();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
