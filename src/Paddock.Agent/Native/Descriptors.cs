using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Paddock.Agent.Native;

/// <summary>
/// Pipes, socket pairs and descriptor flags. Every descriptor is created with O_CLOEXEC so that a process spawned
/// concurrently by another request never inherits it; the spawn's file actions dup2 the child's ends into place.
/// The agent's ends become <see cref="Socket"/>s: .NET drives a Socket over any pollable descriptor (pipes and
/// pty masters included) through its epoll engine, which gives real async reads and writes without a blocked thread
/// per stream (measured: reads, writes, EOF and cancellation behave on pipes and /dev/ptmx as on sockets).
/// </summary>
internal static unsafe partial class Descriptors
{
    private const int O_CLOEXEC = 0x80000;
    private const int F_SETPIPE_SZ = 1031;
    private const int F_GETFL = 3;
    private const int F_SETFL = 4;
    private const int O_NONBLOCK = 0x800;

    /// <summary>A pipe: the two descriptors, owned by the caller. Throws <see cref="IOException"/> when out of descriptors.</summary>
    public static (int Read, int Write) CreatePipe()
    {
        int* fds = stackalloc int[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
        {
            throw Failure("pipe2");
        }
        return (fds[0], fds[1]);
    }

    /// <summary>
    /// Asks for a larger pipe buffer (F_SETPIPE_SZ). Best effort: an unprivileged agent is capped by
    /// /proc/sys/fs/pipe-max-size and keeps the 64 KiB default, which is only slower, not wrong.
    /// </summary>
    public static void TryGrowPipe(int fd, int bytes) => _ = fcntl(fd, F_SETPIPE_SZ, bytes);

    /// <summary>Sets O_NONBLOCK, so a read with nothing to read fails with EAGAIN instead of blocking; 0 or -errno.</summary>
    public static int SetNonBlocking(SafeHandle fd)
    {
        var flags = fcntl(fd, F_GETFL, 0);
        if (flags < 0 || ((flags & O_NONBLOCK) == 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0))
        {
            return -Marshal.GetLastPInvokeError();
        }
        return 0;
    }

    /// <summary>read(2) into <paramref name="buffer"/>: the bytes read (0 at end of file), or -errno (EAGAIN: nothing yet).</summary>
    public static int Read(SafeHandle fd, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            var n = read(fd, p, (nuint)buffer.Length);
            return n >= 0 ? (int)n : -Marshal.GetLastPInvokeError();
        }
    }

    /// <summary>Takes ownership of a descriptor as a Socket for async I/O.</summary>
    public static Socket AsSocket(int fd) => new(new SafeSocketHandle(fd, ownsHandle: true));

    /// <summary>Takes ownership of a descriptor that only needs closing.</summary>
    public static SafeFileHandle Own(int fd) => new(fd, ownsHandle: true);

    /// <summary>close(2) of a descriptor not yet owned by a handle; errors are ignored, as nothing is left to do.</summary>
    public static void Close(int fd) => _ = close(fd);

    private static IOException Failure(string call)
    {
        var errno = Marshal.GetLastPInvokeError();
        return new IOException($"{call} failed: {Errno.Message(errno)}", errno);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int pipe2(int* fds, int flags);

    // fcntl is variadic; F_SETPIPE_SZ and F_SETFL take an int, passed in a register on every 64-bit ABI we run on.
    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(int fd, int cmd, int arg);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(SafeHandle fd, int cmd, int arg);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint read(SafeHandle fd, byte* buffer, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);
}
