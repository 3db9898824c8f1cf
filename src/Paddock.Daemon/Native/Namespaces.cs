using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Paddock.Daemon.Native;

/// <summary>Linux namespace calls (setns(2), open(2) of nsfs files).</summary>
internal static partial class Namespaces
{
    /// <summary>CLONE_NEWNET from linux/sched.h: the namespace type a setns(2) call must match.</summary>
    public const int CloneNewNet = 0x40000000;

    private const int O_RDONLY = 0;
    private const int O_CLOEXEC = 0x80000;

    /// <summary>
    /// Opens a namespace file (/proc/PID/ns/net or a bind mount of one). Returns an invalid handle and the errno when
    /// it cannot be opened (ENOENT: no such file).
    /// </summary>
    public static SafeFileHandle Open(string path, out int errno)
    {
        var handle = open(path, O_RDONLY | O_CLOEXEC);
        errno = handle.IsInvalid ? Marshal.GetLastPInvokeError() : 0;
        return handle;
    }

    /// <summary>
    /// Moves the calling thread into the namespace <paramref name="ns"/> refers to. Returns 0, or the errno:
    /// EINVAL when the file is not a namespace of <paramref name="nsType"/> (e.g. a plain file whose bind mount is
    /// gone), EPERM without CAP_SYS_ADMIN over the namespace's owner.
    /// </summary>
    public static int SetNs(SafeFileHandle ns, int nsType)
    {
        var added = false;
        ns.DangerousAddRef(ref added);
        try
        {
            return setns((int)ns.DangerousGetHandle(), nsType) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
        finally
        {
            if (added)
            {
                ns.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Moves the calling thread into new namespaces of the types in <paramref name="flags"/> (unshare(2); a network
    /// namespace is per thread). Returns 0, or the errno (EPERM without CAP_SYS_ADMIN).
    /// </summary>
    public static int Unshare(int flags) => unshare(flags) == 0 ? 0 : Marshal.GetLastPInvokeError();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int unshare(int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial SafeFileHandle open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);
}
