using System.Runtime.InteropServices;

namespace Paddock.Interpreter.Native;

/// <summary>The libc calls of the server: signals to kernels and the eventfd that wakes the ZeroMQ thread.</summary>
internal static partial class Libc
{
    public const int SIGINT = 2;
    public const int SIGKILL = 9;

    public const int EFD_CLOEXEC = 0x80000;
    public const int EFD_NONBLOCK = 0x800;

    /// <summary>kill(2): 0, or -1 with errno (ESRCH: no such process or group).</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial int kill(int pid, int signal);

    /// <summary>eventfd(2): a descriptor, or -1 with errno.</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial int eventfd(uint initial, int flags);

    /// <summary>write(2) of the 8-byte counter increment; -1 with errno (EAGAIN once the counter is full: already woken).</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static unsafe partial nint write(int fd, void* buffer, nuint count);

    /// <summary>read(2) of the counter, which resets it; -1 with EAGAIN when it is zero.</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static unsafe partial nint read(int fd, void* buffer, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);
}
