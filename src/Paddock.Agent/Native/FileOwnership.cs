using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>chown(2) for what the agent creates on a user's behalf, so files belong to the caller, not to the agent.</summary>
internal static partial class FileOwnership
{
    /// <summary>Sets the owner of a path without following a final symlink (lchown).</summary>
    public static void SetOwner(string path, uint uid, uint gid)
    {
        if (lchown(path, uid, gid) != 0)
        {
            throw new NativeFileException("chown", Marshal.GetLastPInvokeError(), path);
        }
    }

    /// <summary>Sets the owner of an open file (fchown); <paramref name="path"/> only names it in errors.</summary>
    public static void SetOwner(SafeHandle file, string path, uint uid, uint gid)
    {
        if (fchown(file, uid, gid) != 0)
        {
            throw new NativeFileException("chown", Marshal.GetLastPInvokeError(), path);
        }
    }

    /// <summary>Sets the permission bits of an open file (fchmod); after fchown, which clears set-id bits.</summary>
    public static void SetMode(SafeHandle file, string path, uint mode)
    {
        if (fchmod(file, mode) != 0)
        {
            throw new NativeFileException("chmod", Marshal.GetLastPInvokeError(), path);
        }
    }

    /// <summary>0 on success; -1 with errno (EPERM without CAP_CHOWN, ENOENT, EROFS, ELOOP, ...).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int lchown(string path, uint owner, uint group);

    /// <summary>0 on success; -1 with errno (EPERM, EBADF, EROFS, EIO).</summary>
    [LibraryImport("libc", SetLastError = true)]
    private static partial int fchown(SafeHandle fd, uint owner, uint group);

    /// <summary>0 on success; -1 with errno (EPERM, EBADF, EROFS, EIO).</summary>
    [LibraryImport("libc", SetLastError = true)]
    private static partial int fchmod(SafeHandle fd, uint mode);
}
