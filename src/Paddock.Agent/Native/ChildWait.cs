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

    /// <summary>
    /// Takes the .NET runtime's SIGCHLD hook (System.Native's SystemNative_RegisterForSigChld, the entry point
    /// System.Diagnostics.Process uses) so that <paramref name="onSigChld"/> runs on every SIGCHLD. Without it the
    /// runtime itself reaps every child, statuses and all, when it is PID 1 or was started with SIGCHLD ignored
    /// (pal_signal.c: <c>reapAll = g_pid == 1 || IsSigIgn(...)</c>, applied only while no callback is registered);
    /// measured here: as PID 1 in a PID namespace, no exit status reached the agent's own waitpid. With a callback
    /// registered the runtime reaps nothing and leaves it to us. Returns false when the runtime has no such entry
    /// point (then the agent must not run as PID 1).
    /// </summary>
    public static bool TakeRuntimeSigChld(Action onSigChld)
    {
        s_onSigChld = onSigChld;
        try
        {
            RegisterForSigChld(&OnSigChld);
            return true;
        }
        catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
        {
            return false;
        }
    }

    private static Action? s_onSigChld;

    // Runs on the runtime's signal-handling thread (not in the signal handler): managed code is fine here.
    [System.Runtime.InteropServices.UnmanagedCallersOnly]
    private static int OnSigChld(int reapAll, int configureConsole)
    {
        s_onSigChld?.Invoke();
        return 0; // no console reconfiguration to delay
    }

    // System.Native is the runtime's own shim: a shared library beside the JIT runtime, linked into a NativeAOT binary.
    [LibraryImport("libSystem.Native", EntryPoint = "SystemNative_RegisterForSigChld")]
    private static partial void RegisterForSigChld(delegate* unmanaged<int, int, int> callback);

    /// <summary>This process's id (getpid cannot fail).</summary>
    public static int ProcessId() => getpid();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int waitpid(int pid, int* status, int options);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport("libc")]
    private static partial int getpid();
}
