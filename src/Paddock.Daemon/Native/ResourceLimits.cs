using System.Runtime.InteropServices;

namespace Paddock.Daemon.Native;

/// <summary>getrlimit(2) of the daemon itself.</summary>
internal static partial class ProcessLimits
{
    private const int RLIMIT_NOFILE = 7;

    /// <summary>
    /// The daemon's hard limit on open files. A sandbox cannot get more: its init runs in a user namespace, where
    /// raising a hard limit needs CAP_SYS_RESOURCE in the initial namespace (measured: runc fails with "error setting
    /// rlimit type 7: operation not permitted").
    /// </summary>
    public static unsafe ulong OpenFilesHardLimit()
    {
        var pair = stackalloc ulong[2]; // struct rlimit { rlim_t rlim_cur; rlim_t rlim_max; }
        return getrlimit(RLIMIT_NOFILE, pair) == 0
            ? pair[1]
            : throw Errno.Exception("getrlimit", "RLIMIT_NOFILE", Marshal.GetLastPInvokeError());
    }

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int getrlimit(int resource, ulong* limits);
}
