using System.Runtime.InteropServices;
using System.Text;

namespace Paddock.Agent.Native;

/// <summary>The calling thread's kernel name (its /proc/self/task/TID/comm) and id, through prctl(2) and gettid(2).</summary>
internal static unsafe partial class Threads
{
    private const int PR_SET_NAME = 15;

    /// <summary>The kernel's limit on a thread name: 16 bytes with the terminating NUL.</summary>
    public const int MaxNameBytes = 15;

    /// <summary>
    /// Sets the calling thread's comm to <paramref name="name"/> (ASCII, at most <see cref="MaxNameBytes"/> bytes).
    /// Returns 0 or the errno.
    /// </summary>
    public static int SetCurrentName(string name)
    {
        var bytes = Encoding.ASCII.GetBytes(name);
        if (bytes.Length > MaxNameBytes)
        {
            throw new ArgumentException($"thread name '{name}' is longer than {MaxNameBytes} bytes", nameof(name));
        }
        var buffer = stackalloc byte[MaxNameBytes + 1];
        bytes.CopyTo(new Span<byte>(buffer, MaxNameBytes + 1));
        buffer[bytes.Length] = 0;
        return prctl(PR_SET_NAME, (nuint)buffer, 0, 0, 0) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>The calling thread's kernel id (the TID in /proc/self/task).</summary>
    public static int CurrentId() => gettid();

    // prctl is variadic in <sys/prctl.h>; every argument here is an integer or pointer, which the x86-64 and aarch64
    // calling conventions pass alike for variadic and fixed parameters.
    [LibraryImport("libc", SetLastError = true)]
    private static partial int prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport("libc")]
    private static partial int gettid();
}
