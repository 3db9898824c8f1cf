using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>
/// The agent's groups, and switching the identity of the calling thread alone, so that a child posix_spawn'd from it
/// starts as another user without a helper process.
/// </summary>
/// <remarks>
/// Linux keeps credentials per thread. glibc's setuid/setresuid/setgroups make every thread of the process follow
/// (nptl's SIGSETXID broadcast, as POSIX asks); the raw system calls change only the caller, and clone (posix_spawn)
/// copies the caller's credentials into the child. The switch keeps the saved uid and gid at 0, so the thread can
/// return to root: only the effective capabilities are dropped while it is the user (capabilities(7), "Effect of
/// user ID changes on capabilities"), the permitted ones stay. execve in the child then copies the effective ids
/// into the saved ones; with no id left at 0 the child has no permitted capabilities either.
/// </remarks>
internal static unsafe partial class Credentials
{
    // System call numbers (arch/x86/entry/syscalls/syscall_64.tbl; include/uapi/asm-generic/unistd.h for arm64).
    private static readonly (nint SetGroups, nint SetResGid, nint SetResUid) Calls = RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => (116, 119, 117),
        Architecture.Arm64 => (159, 149, 147),
        var other => throw new PlatformNotSupportedException($"no system call numbers for {other}"),
    };

    /// <summary>The agent's supplementary groups (getgroups(2)).</summary>
    public static uint[] GetGroups()
    {
        var count = getgroups(0, null);
        if (count <= 0)
        {
            return [];
        }
        var groups = new uint[count];
        fixed (uint* p = groups)
        {
            count = getgroups(count, p);
        }
        return count < 0 ? [] : groups[..count];
    }

    /// <summary>
    /// Makes the calling thread, and only it, act as <paramref name="uid"/>/<paramref name="gid"/> with
    /// <paramref name="groups"/>: setgroups, setresgid(gid, gid, 0), setresuid(uid, uid, 0), each the raw system call.
    /// Needs root (CAP_SETUID, CAP_SETGID). Returns 0, or the errno of the step that failed, after putting back what it
    /// had already changed. The caller must not yield the thread (no await) before <see cref="RestoreRootOnThisThread"/>.
    /// </summary>
    public static int AssumeOnThisThread(uint uid, uint gid, ReadOnlySpan<uint> groups, ReadOnlySpan<uint> agentGroups)
    {
        var rc = SetGroups(groups);
        if (rc != 0)
        {
            return rc;
        }
        rc = SetResGid(gid, gid, 0);
        if (rc != 0)
        {
            RestoreRootOnThisThread(agentGroups);
            return rc;
        }
        rc = SetResUid(uid, uid, 0);
        if (rc != 0)
        {
            RestoreRootOnThisThread(agentGroups);
            return rc;
        }
        return 0;
    }

    /// <summary>
    /// Puts the calling thread back to root with the agent's groups: uid first (allowed because the saved uid stayed 0,
    /// and it brings back the effective capabilities the gid and groups need), then gid, then groups. A thread of the
    /// agent that stayed another user would run later work, on any request, as that user: if this fails the process
    /// ends at once rather than go on.
    /// </summary>
    public static void RestoreRootOnThisThread(ReadOnlySpan<uint> agentGroups)
    {
        var rc = SetResUid(0, 0, 0);
        if (rc == 0)
        {
            rc = SetResGid(0, 0, 0);
        }
        if (rc == 0)
        {
            rc = SetGroups(agentGroups);
        }
        if (rc != 0)
        {
            Environment.FailFast($"paddock-agent: cannot return a thread to root after starting a process as another user: {Errno.Message(rc)}");
        }
    }

    /// <summary>
    /// access(2) with X_OK: whether the thread's real ids (the user's, inside <see cref="AssumeOnThisThread"/>) may
    /// enter <paramref name="directory"/>. Returns 0 or the errno.
    /// </summary>
    public static int CanEnter(string directory) => access(directory, X_OK) == 0 ? 0 : Marshal.GetLastPInvokeError();

    private const int X_OK = 1;

    private static int SetGroups(ReadOnlySpan<uint> groups)
    {
        fixed (uint* p = groups)
        {
            return syscall(Calls.SetGroups, groups.Length, (nint)p, 0) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
    }

    private static int SetResGid(uint r, uint e, uint s) => syscall(Calls.SetResGid, (nint)r, (nint)e, (nint)s) == 0 ? 0 : Marshal.GetLastPInvokeError();

    private static int SetResUid(uint r, uint e, uint s) => syscall(Calls.SetResUid, (nint)r, (nint)e, (nint)s) == 0 ? 0 : Marshal.GetLastPInvokeError();

    // syscall(2) is variadic; with integer arguments only, the fixed-argument call passes them in the same registers
    // on x86-64 and on Linux arm64 (AAPCS64), and glibc's syscall reads exactly those.
    [LibraryImport("libc", SetLastError = true)]
    private static partial nint syscall(nint number, nint a, nint b, nint c);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getgroups(int size, uint* list);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int access(string path, int mode);
}
