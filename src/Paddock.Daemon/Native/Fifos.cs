using System.Runtime.InteropServices;

namespace Paddock.Daemon.Native;

/// <summary>
/// mkfifo(3), open(2), read(2) and close(2) of named pipes: the gVisor tier's agent output channel
/// (<see cref="Runtimes.Host.AgentLogDrain"/>).
/// </summary>
internal static unsafe partial class Fifos
{
    public const int EAGAIN = 11;

    private const int O_RDWR = 0x2;
    private const int O_NONBLOCK = 0x800;
    private const int O_CLOEXEC = 0x80000;
    private const int O_NOFOLLOW = 0x20000;

    /// <summary>
    /// Makes a FIFO at <paramref name="path"/> (mode 0600); one already there is kept (a restarted daemon's, or a
    /// paused sandbox's). The path is in a directory only the daemon writes, so an existing entry is its own FIFO.
    /// </summary>
    public static void Ensure(string path)
    {
        if (mkfifo(path, 0x180) != 0 && Marshal.GetLastPInvokeError() is var errno && errno != Errno.EEXIST)
        {
            throw Errno.Exception("mkfifo", path, errno);
        }
    }

    /// <summary>
    /// Opens the FIFO for reading and writing, non-blocking, close-on-exec: a read end that exists at once (a writer's
    /// open never waits for it) and that never sees end-of-file while it is open itself. -1 with the errno on failure.
    /// </summary>
    public static int OpenReader(string path, out int errno)
    {
        var fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
        errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        return fd;
    }

    /// <summary>read(2): the byte count, 0 at end of file, or -1 with the errno (<see cref="EAGAIN"/>: nothing buffered).</summary>
    public static int Read(int fd, Span<byte> buffer, out int errno)
    {
        fixed (byte* p = buffer)
        {
            var n = (int)read(fd, p, (nuint)buffer.Length);
            errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
            return n;
        }
    }

    public static void Close(int fd) => _ = close(fd);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mkfifo(string path, uint mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint read(int fd, byte* buffer, nuint count);

    [LibraryImport("libc")]
    private static partial int close(int fd);
}
