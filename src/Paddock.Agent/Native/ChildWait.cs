using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>waitpid(2) and the process attributes that decide which processes the agent must reap.</summary>
internal static unsafe partial class ChildWait
{
    private const int WNOHANG = 1;
    private const int PR_SET_CHILD_SUBREAPER = 36;

    /// <summary>
    /// Reaps one child that has terminated, without blocking: the pid and its raw wait status, 0 when children remain
    /// but none has terminated, or -1 with <paramref name="errno"/> (ECHILD: no children at all; EINTR: retry).
    /// </summary>
    public static int TryReapAny(out int status, out int errno)
    {
        int s;
        var pid = waitpid(-1, &s, WNOHANG);
        status = s;
        errno = pid < 0 ? Marshal.GetLastPInvokeError() : 0;
        return pid;
    }

    /// <summary>
    /// Makes the agent the reaper of every orphaned descendant (prctl PR_SET_CHILD_SUBREAPER, Linux 3.4), as PID 1
    /// is by nature: a background job of a finished command is then reparented to the agent, which reaps it.
    /// Returns 0 or the errno.
    /// </summary>
    public static int BecomeSubreaper() => prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>This process's id (getpid cannot fail).</summary>
    public static int ProcessId() => getpid();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int waitpid(int pid, int* status, int options);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport("libc")]
    private static partial int getpid();
}
