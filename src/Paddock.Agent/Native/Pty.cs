using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>
/// Pseudo-terminals (pty(7)): a master kept by the agent and a slave path the child opens. The child opens the slave
/// in a posix_spawn file action after setsid, without O_NOCTTY, so on Linux the slave becomes its controlling
/// terminal (tty_open → tty_open_proc_set_tty for a session leader without one); no TIOCSCTTY is needed.
/// </summary>
internal static unsafe partial class Pty
{
    public const int O_RDWR = 0x2;
    private const int O_NOCTTY = 0x100;
    private const int O_CLOEXEC = 0x80000;
    private const ulong TIOCSWINSZ = 0x5414;

    /// <summary>Opens a new master (posix_openpt, grantpt, unlockpt) and returns it with its slave's path.</summary>
    public static int OpenMaster(out string slavePath)
    {
        var master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
        {
            throw Failure("posix_openpt");
        }
        try
        {
            if (grantpt(master) != 0)
            {
                throw Failure("grantpt");
            }
            if (unlockpt(master) != 0)
            {
                throw Failure("unlockpt");
            }
            var buffer = stackalloc byte[128];
            var rc = ptsname_r(master, buffer, 128);
            if (rc != 0)
            {
                throw new IOException($"ptsname_r failed: {Errno.Message(rc)}", rc);
            }
            slavePath = Marshal.PtrToStringUTF8((nint)buffer)!;
            return master;
        }
        catch
        {
            Descriptors.Close(master);
            throw;
        }
    }

    /// <summary>
    /// Sets the terminal size (TIOCSWINSZ on the master); the kernel sends SIGWINCH to the terminal's foreground
    /// process group. Returns 0 or the errno.
    /// </summary>
    public static int SetSize(SafeHandle master, ushort cols, ushort rows)
    {
        var size = new WinSize { Rows = rows, Cols = cols };
        var added = false;
        master.DangerousAddRef(ref added);
        try
        {
            return ioctl((int)master.DangerousGetHandle(), TIOCSWINSZ, &size) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
        finally
        {
            if (added)
            {
                master.DangerousRelease();
            }
        }
    }

    /// <summary>Sets the size on a raw descriptor before it is wrapped; returns 0 or the errno.</summary>
    public static int SetSize(int master, ushort cols, ushort rows)
    {
        var size = new WinSize { Rows = rows, Cols = cols };
        return ioctl(master, TIOCSWINSZ, &size) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>Gives the slave to the user a process runs as, as login(1) does, so tty-owning tools work for them.</summary>
    public static void TryChown(string slavePath, uint uid) => _ = chown(slavePath, uid, uint.MaxValue);

    private static IOException Failure(string call)
    {
        var errno = Marshal.GetLastPInvokeError();
        return new IOException($"{call} failed: {Errno.Message(errno)}", errno);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct WinSize
    {
        public ushort Rows;
        public ushort Cols;
        public ushort XPixel;
        public ushort YPixel;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int posix_openpt(int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int grantpt(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int unlockpt(int fd);

    // Returns the error number (not -1/errno).
    [LibraryImport("libc")]
    private static partial int ptsname_r(int fd, byte* buffer, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(int fd, ulong request, WinSize* size);

    // (uid_t)-1 / (gid_t)-1 leave that id unchanged.
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int chown(string path, uint owner, uint group);
}
