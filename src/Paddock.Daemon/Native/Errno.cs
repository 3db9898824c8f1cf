using System.Runtime.InteropServices;

namespace Paddock.Daemon.Native;

/// <summary>The errno values this project tests for (asm-generic/errno-base.h, errno.h), and their text.</summary>
internal static partial class Errno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int ESRCH = 3;
    public const int EINTR = 4;
    public const int ENXIO = 6;
    public const int EAGAIN = 11;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int ENOTDIR = 20;
    public const int EINVAL = 22;
    public const int ENODATA = 61;
    public const int ENOBUFS = 105;

    /// <summary>strerror(3) of <paramref name="errno"/>, e.g. "Device or resource busy".</summary>
    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);

    /// <summary>An <see cref="IOException"/> that names the call, the path and the error.</summary>
    public static IOException Exception(string call, string path, int errno) =>
        new($"{call} {path}: {Describe(errno)} (errno {errno})", errno);
}
