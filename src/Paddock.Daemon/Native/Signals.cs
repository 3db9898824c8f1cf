using System.Runtime.InteropServices;

namespace Paddock.Daemon.Native;

/// <summary>kill(2) by pid, for processes this daemon started or found in a sandbox's own cgroup.</summary>
internal static partial class Signals
{
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;

    /// <summary>kill(2): 0, or errno (ESRCH: no such process, which callers cleaning up treat as done).</summary>
    public static int Send(int pid, int signal) => kill(pid, signal) == 0 ? 0 : Marshal.GetLastPInvokeError();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);
}
