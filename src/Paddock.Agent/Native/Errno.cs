using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>errno values this agent branches on (Linux, asm-generic/errno-base.h) and their text.</summary>
internal static partial class Errno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int ESRCH = 3;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int E2BIG = 7;
    public const int ENOEXEC = 8;
    public const int ECHILD = 10;
    public const int EAGAIN = 11;
    public const int EACCES = 13;
    public const int ENOTDIR = 20;
    public const int EPIPE = 32;

    /// <summary>The C library's message for an error number ("No such file or directory").</summary>
    public static string Message(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
