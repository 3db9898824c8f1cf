using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Paddock.Agent.Native;

/// <summary>
/// epoll(7), for the agent's own readiness poller of process output (Processes/OutputPoller.cs). Every function
/// returns 0 or a count on success and the negated errno on failure.
/// </summary>
internal static unsafe partial class Epoll
{
    public const uint EPOLLIN = 0x001;
    public const uint EPOLLERR = 0x008;
    public const uint EPOLLHUP = 0x010;
    public const uint EPOLLRDHUP = 0x2000;

    /// <summary>Report one event, then stay disabled until re-armed with <see cref="Modify"/>.</summary>
    public const uint EPOLLONESHOT = 1u << 30;

    private const int EPOLL_CLOEXEC = 0x80000;
    private const int EPOLL_CTL_ADD = 1;
    private const int EPOLL_CTL_DEL = 2;
    private const int EPOLL_CTL_MOD = 3;

    /// <summary>
    /// sizeof(struct epoll_event): the kernel packs it to 12 bytes on x86-64 (events, then the 64-bit data at
    /// offset 4); on other 64-bit ABIs it is 16 bytes with the data at offset 8.
    /// </summary>
    public static readonly int EventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;

    private static readonly int DataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    /// <summary>A new epoll instance (close-on-exec); throws <see cref="IOException"/> when none can be made.</summary>
    public static SafeFileHandle Create()
    {
        var fd = epoll_create1(EPOLL_CLOEXEC);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"epoll_create1 failed: {Errno.Message(errno)}", errno);
        }
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>Adds <paramref name="fd"/> with <paramref name="events"/> and <paramref name="data"/>; 0 or -errno.</summary>
    public static int Add(SafeHandle epoll, SafeHandle fd, uint events, ulong data) => Control(epoll, EPOLL_CTL_ADD, fd, events, data);

    /// <summary>Re-arms a one-shot registration (the kernel checks readiness at once, so no wake-up is lost); 0 or -errno.</summary>
    public static int Modify(SafeHandle epoll, SafeHandle fd, uint events, ulong data) => Control(epoll, EPOLL_CTL_MOD, fd, events, data);

    /// <summary>Removes <paramref name="fd"/>; 0 or -errno (ENOENT when it was never added).</summary>
    public static int Remove(SafeHandle epoll, SafeHandle fd) => Control(epoll, EPOLL_CTL_DEL, fd, 0, 0);

    /// <summary>
    /// Waits for events into <paramref name="buffer"/> (<paramref name="capacity"/> events of <see cref="EventSize"/>
    /// bytes), blocking without a timeout; the number of events, or -errno (EINTR when a signal interrupted it).
    /// </summary>
    public static int Wait(SafeHandle epoll, byte* buffer, int capacity)
    {
        var n = epoll_wait(epoll, buffer, capacity, -1);
        return n >= 0 ? n : -Marshal.GetLastPInvokeError();
    }

    /// <summary>The events and data of the <paramref name="index"/>th event in a buffer filled by <see cref="Wait"/>.</summary>
    public static (uint Events, ulong Data) Read(byte* buffer, int index)
    {
        var entry = buffer + (index * EventSize);
        return (*(uint*)entry, Unsafe.ReadUnaligned<ulong>(entry + DataOffset));
    }

    private static int Control(SafeHandle epoll, int op, SafeHandle fd, uint events, ulong data)
    {
        var entry = stackalloc byte[16];
        *(uint*)entry = events;
        Unsafe.WriteUnaligned(entry + DataOffset, data);
        var added = false;
        try
        {
            fd.DangerousAddRef(ref added);
            return epoll_ctl(epoll, op, (int)fd.DangerousGetHandle(), entry) == 0 ? 0 : -Marshal.GetLastPInvokeError();
        }
        finally
        {
            if (added)
            {
                fd.DangerousRelease();
            }
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_create1(int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_ctl(SafeHandle epoll, int op, int fd, byte* evt);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_wait(SafeHandle epoll, byte* events, int maxEvents, int timeout);
}
