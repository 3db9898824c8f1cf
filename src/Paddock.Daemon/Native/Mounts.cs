using System.Runtime.InteropServices;

namespace Paddock.Daemon.Native;

/// <summary>mount(2) and umount2(2). Every call returns 0 or the errno, and callers decide which errno is expected.</summary>
internal static partial class Mounts
{
    public const ulong MS_RDONLY = 0x1;
    public const ulong MS_NOSUID = 0x2;
    public const ulong MS_NODEV = 0x4;
    public const ulong MS_BIND = 0x1000;
    public const ulong MS_REC = 0x4000;
    public const ulong MS_PRIVATE = 1 << 18;
    public const ulong MS_SHARED = 1 << 20;

    /// <summary>MNT_DETACH: lazy unmount; the mount leaves the tree now and goes away when its last user does.</summary>
    public const int MNT_DETACH = 0x2;

    /// <summary>UMOUNT_NOFOLLOW: do not follow a symbolic link at the target (a path inside a sandbox could be one).</summary>
    public const int UMOUNT_NOFOLLOW = 0x8;

    /// <summary>mount(2): 0, or errno (EPERM without CAP_SYS_ADMIN, EINVAL for bad options, ENOENT for a missing target).</summary>
    public static int Mount(string? source, string target, string? fsType, ulong flags, string? data)
    {
        return mount(source, target, fsType, flags, data) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>umount2(2): 0, or errno (EINVAL: not a mount point; EBUSY: in use; ENOENT: no such path).</summary>
    public static int Unmount(string target, int flags)
    {
        return umount2(target, flags) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mount(string? source, string target, string? filesystemtype, ulong mountflags, string? data);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int umount2(string target, int flags);
}
