using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>
/// mkdir(2), rename(2), unlink(2), rmdir(2) and readlink(2) with their errno: the file service sorts errors by errno
/// (ENOTDIR vs ENOENT vs EEXIST...), which .NET's exceptions blur, and .NET's Directory.Move/File.Move add semantics
/// (refusing to replace, copying across devices) that E2B's Move does not have.
/// </summary>
internal static partial class DirectoryEntries
{
    /// <summary>Creates one directory; returns 0 or the errno (EEXIST, ENOENT, ENOTDIR, EACCES, ENOSPC, EROFS, ...).</summary>
    public static int TryMakeDirectory(string path, uint mode) => mkdir(path, mode) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>Renames atomically, replacing a file or empty directory at <paramref name="destination"/>.</summary>
    public static int TryRename(string source, string destination) => rename(source, destination) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>Removes a non-directory entry (a symlink itself, never its target).</summary>
    public static int TryUnlink(string path) => unlink(path) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>Removes an empty directory.</summary>
    public static int TryRemoveDirectory(string path) => rmdir(path) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>The target text of a symlink, or null with the errno.</summary>
    public static string? TryReadLink(string path, out int errno)
    {
        // PATH_MAX; a longer target cannot be followed by the kernel anyway.
        var buffer = new byte[4096];
        var n = readlink(path, buffer, (nuint)buffer.Length);
        if (n < 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }
        errno = 0;
        return System.Text.Encoding.UTF8.GetString(buffer, 0, (int)n);
    }

    /// <summary>The canonical absolute path (every symlink resolved, as Go's filepath.EvalSymlinks), or null with the errno.</summary>
    public static string? TryRealPath(string path, out int errno)
    {
        var resolved = realpath(path, 0);
        if (resolved == 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }
        try
        {
            errno = 0;
            return Marshal.PtrToStringUTF8(resolved);
        }
        finally
        {
            free(resolved);
        }
    }

    /// <summary>A malloc'd path (given a null buffer), or null with errno (ENOENT: a dangling link, EACCES, ELOOP, ENOTDIR).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint realpath(string path, nint resolved);

    [LibraryImport("libc")]
    private static partial void free(nint pointer);

    /// <summary>0 or -1 with errno (EEXIST, ENOENT, ENOTDIR, EACCES, EPERM, ENOSPC, EDQUOT, EROFS, ENAMETOOLONG, ELOOP, EMLINK).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mkdir(string path, uint mode);

    /// <summary>0 or -1 with errno (ENOENT, EXDEV, EISDIR, ENOTDIR, ENOTEMPTY, EINVAL (into itself), EBUSY, EACCES, EPERM, ...).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int rename(string oldPath, string newPath);

    /// <summary>0 or -1 with errno (ENOENT, EISDIR, EACCES, EPERM, EBUSY, EROFS, ...).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int unlink(string path);

    /// <summary>0 or -1 with errno (ENOTEMPTY, ENOENT, ENOTDIR, EBUSY (mount point), EACCES, EPERM, ...).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int rmdir(string path);

    /// <summary>Bytes placed in the buffer (not NUL-terminated), or -1 with errno (EINVAL: not a symlink, ENOENT, ...).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint readlink(string path, byte[] buffer, nuint size);
}
