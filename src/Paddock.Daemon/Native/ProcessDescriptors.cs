using System.Runtime.InteropServices;

namespace Paddock.Daemon.Native;

/// <summary>
/// pidfd_open(2), eventfd(2) and poll(2): a descriptor per watched process that becomes readable when the process
/// exits, and a wake-up descriptor, polled together by one thread (the runc tier's AgentExitWatcher).
/// </summary>
internal static unsafe partial class ProcessDescriptors
{
    public const short POLLIN = 0x1;
    public const short POLLERR = 0x8;
    public const short POLLHUP = 0x10;
    public const short POLLNVAL = 0x20;

    // x86-64 and aarch64 share the generic syscall number (Linux 5.3).
    private const long SYS_pidfd_open = 434;
    private const int EFD_CLOEXEC = 0x80000;
    private const int EFD_NONBLOCK = 0x800;

    /// <summary>struct pollfd.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    /// <summary>A pidfd for <paramref name="pid"/> (close-on-exec), or -1 with the errno (ESRCH: it is gone).</summary>
    public static int OpenPidfd(int pid, out int errno)
    {
        var fd = (int)syscall(SYS_pidfd_open, pid, 0);
        errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        return fd;
    }

    /// <summary>A non-blocking, close-on-exec eventfd; throws when none can be made.</summary>
    public static int CreateEventFd()
    {
        var fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        return fd >= 0 ? fd : throw new IOException($"eventfd: {Errno.Describe(Marshal.GetLastPInvokeError())}");
    }

    /// <summary>Adds one to an eventfd (wakes its poller).</summary>
    public static void Signal(int eventFd)
    {
        ulong one = 1;
        _ = write(eventFd, &one, sizeof(ulong));
    }

    /// <summary>Resets an eventfd to zero (non-blocking read).</summary>
    public static void Drain(int eventFd)
    {
        ulong value;
        _ = read(eventFd, &value, sizeof(ulong));
    }

    /// <summary>poll(2) without a timeout; the number of ready descriptors, or -1 with the errno (EINTR).</summary>
    public static int Poll(Span<PollFd> fds, out int errno)
    {
        fixed (PollFd* p = fds)
        {
            var n = poll(p, (nuint)fds.Length, -1);
            errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
            return n;
        }
    }

    public static void Close(int fd) => _ = close(fd);

    // syscall(2) is variadic; its arguments here are integers, passed alike for variadic and fixed parameters.
    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number, long arg1, long arg2);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int eventfd(uint initval, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int poll(PollFd* fds, nuint nfds, int timeout);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint read(int fd, void* buffer, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint write(int fd, void* buffer, nuint count);

    [LibraryImport("libc")]
    private static partial int close(int fd);
}
