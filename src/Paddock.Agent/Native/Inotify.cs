using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>
/// inotify(7), and an eventfd(2) to wake the thread that waits on it: a watch's reader thread polls both, so
/// stopping a watch never has to close an fd that another thread is blocked on (the fd number could be reused).
/// </summary>
internal static partial class Inotify
{
    public const uint Modify = 0x00000002;
    public const uint Attrib = 0x00000004;
    public const uint MovedFrom = 0x00000040;
    public const uint MovedTo = 0x00000080;
    public const uint Create = 0x00000100;
    public const uint Delete = 0x00000200;
    public const uint DeleteSelf = 0x00000400;
    public const uint MoveSelf = 0x00000800;
    public const uint Unmount = 0x00002000;
    public const uint QueueOverflow = 0x00004000;
    public const uint Ignored = 0x00008000;
    public const uint OnlyDirectory = 0x01000000;
    public const uint DontFollow = 0x02000000;
    public const uint ExcludeUnlinked = 0x04000000;
    public const uint IsDirectory = 0x40000000;

    /// <summary>Size of struct inotify_event before its name: wd, mask, cookie, len.</summary>
    public const int EventHeaderSize = 16;

    private const int NonBlockCloseOnExec = 0x800 | 0x80000; // IN_NONBLOCK | IN_CLOEXEC (= O_NONBLOCK | O_CLOEXEC)
    private const short PollIn = 0x1;

    /// <summary>A new non-blocking inotify instance. Throws with EMFILE when the user's instance limit is reached.</summary>
    public static InotifyHandle Open()
    {
        var handle = inotify_init1(NonBlockCloseOnExec);
        if (handle.IsInvalid)
        {
            var errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            throw new NativeFileException("inotify_init1 for", errno, "a watch");
        }
        return handle;
    }

    /// <summary>Adds (or updates) a watch; returns 0 and the watch descriptor, or the errno (ENOENT, ENOTDIR with
    /// OnlyDirectory, EACCES, ENOSPC: the user's max_user_watches is reached).</summary>
    public static int TryAddWatch(InotifyHandle inotify, string path, uint mask, out int watch)
    {
        watch = inotify_add_watch(inotify, path, mask);
        return watch >= 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>Removes a watch; EINVAL (already gone, e.g. its directory was deleted) is not an error here.</summary>
    public static void RemoveWatch(InotifyHandle inotify, int watch) => _ = inotify_rm_watch(inotify, watch);

    /// <summary>Reads queued events into <paramref name="buffer"/>: the byte count, or minus the errno (-EAGAIN: none queued).</summary>
    public static int Read(InotifyHandle inotify, Span<byte> buffer)
    {
        nint n;
        unsafe
        {
            fixed (byte* p = buffer)
            {
                n = read(inotify, p, (nuint)buffer.Length);
            }
        }
        return n >= 0 ? (int)n : -Marshal.GetLastPInvokeError();
    }

    /// <summary>A non-blocking eventfd that <see cref="Wake"/> makes readable.</summary>
    public static WakeupHandle OpenWakeup()
    {
        var handle = eventfd(0, NonBlockCloseOnExec);
        if (handle.IsInvalid)
        {
            var errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            throw new NativeFileException("eventfd for", errno, "a watch");
        }
        return handle;
    }

    /// <summary>Makes the eventfd readable; harmless when it already is or has been closed.</summary>
    public static void Wake(WakeupHandle wakeup)
    {
        if (wakeup.IsClosed)
        {
            return;
        }
        ulong one = 1;
        unsafe
        {
            _ = write(wakeup, &one, sizeof(ulong));
        }
    }

    /// <summary>
    /// Waits until the inotify fd has events (returns 1), the wakeup fired (2), or <paramref name="timeoutMs"/> passed (0).
    /// EINTR counts as a timeout, so callers simply loop.
    /// </summary>
    public static int Wait(InotifyHandle inotify, WakeupHandle wakeup, int timeoutMs)
    {
        var addedInotify = false;
        var addedWakeup = false;
        try
        {
            inotify.DangerousAddRef(ref addedInotify);
            wakeup.DangerousAddRef(ref addedWakeup);
            Span<PollFd> fds = stackalloc PollFd[2];
            fds[0] = new PollFd { Fd = (int)inotify.DangerousGetHandle(), Events = PollIn };
            fds[1] = new PollFd { Fd = (int)wakeup.DangerousGetHandle(), Events = PollIn };
            int rc;
            unsafe
            {
                fixed (PollFd* p = fds)
                {
                    rc = poll(p, 2, timeoutMs);
                }
            }
            if (rc <= 0)
            {
                return 0;
            }
            return (fds[1].Revents & PollIn) != 0 ? 2 : (fds[0].Revents != 0 ? 1 : 0);
        }
        finally
        {
            if (addedInotify)
            {
                inotify.DangerousRelease();
            }
            if (addedWakeup)
            {
                wakeup.DangerousRelease();
            }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    /// <summary>An fd, or -1 with errno (EMFILE: max_user_instances or the process fd limit, ENFILE, ENOMEM).</summary>
    [LibraryImport("libc", SetLastError = true)]
    private static partial InotifyHandle inotify_init1(int flags);

    /// <summary>A watch descriptor, or -1 with errno (EACCES, ENOENT, ENOTDIR (IN_ONLYDIR), ENOSPC, ENOMEM, EBADF).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int inotify_add_watch(InotifyHandle fd, string path, uint mask);

    /// <summary>0, or -1 with errno (EINVAL: not a valid watch of this instance).</summary>
    [LibraryImport("libc", SetLastError = true)]
    private static partial int inotify_rm_watch(InotifyHandle fd, int wd);

    /// <summary>Bytes read, or -1 with errno (EAGAIN when nothing is queued, EINTR, EINVAL: buffer too small).</summary>
    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint read(InotifyHandle fd, byte* buffer, nuint count);

    /// <summary>An fd, or -1 with errno (EMFILE, ENFILE, ENOMEM).</summary>
    [LibraryImport("libc", SetLastError = true)]
    private static partial WakeupHandle eventfd(uint initval, int flags);

    /// <summary>8, or -1 with errno (EAGAIN when the counter would overflow: it is already readable).</summary>
    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint write(WakeupHandle fd, void* buffer, nuint count);

    /// <summary>Ready fds, 0 on timeout, or -1 with errno (EINTR, ENOMEM).</summary>
    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int poll(PollFd* fds, nuint count, int timeout);
}

/// <summary>An inotify instance's fd; closing it drops every watch it holds.</summary>
internal sealed partial class InotifyHandle : SafeHandle
{
    public InotifyHandle()
        : base(-1, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle < 0;

    protected override bool ReleaseHandle() => close((int)handle) == 0;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);
}

/// <summary>An eventfd used only to wake a waiting watch thread.</summary>
internal sealed partial class WakeupHandle : SafeHandle
{
    public WakeupHandle()
        : base(-1, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle < 0;

    protected override bool ReleaseHandle() => close((int)handle) == 0;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);
}
