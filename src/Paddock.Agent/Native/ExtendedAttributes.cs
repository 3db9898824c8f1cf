using System.Runtime.InteropServices;
using System.Text;

namespace Paddock.Agent.Native;

/// <summary>
/// Extended attributes (xattr(7)), where E2B keeps user metadata of files under <c>user.e2b.*</c>.
/// Reads use the l- variants so an entry's own attributes are reported, never its symlink target's.
/// </summary>
internal static partial class ExtendedAttributes
{
    // XATTR_LIST_MAX and XATTR_SIZE_MAX are 64 KiB (linux/limits.h): no name list or value can be larger.
    private const int MaxBytes = 64 * 1024;

    /// <summary>
    /// The names of a path's attributes; empty when the filesystem keeps none (ENOTSUP) or the entry vanished.
    /// </summary>
    public static IReadOnlyList<string> List(string path)
    {
        var size = llistxattr(path, null, 0);
        if (size <= 0)
        {
            return [];
        }
        var buffer = new byte[Math.Min((int)size, MaxBytes)];
        size = llistxattr(path, buffer, (nuint)buffer.Length);
        if (size < 0 && Marshal.GetLastPInvokeError() == FileErrno.ERANGE)
        {
            // The list grew between the two calls; ask once more with the largest possible buffer.
            buffer = new byte[MaxBytes];
            size = llistxattr(path, buffer, (nuint)buffer.Length);
        }
        if (size <= 0)
        {
            return [];
        }
        var names = new List<string>();
        var start = 0;
        for (var i = 0; i < size; i++)
        {
            if (buffer[i] == 0)
            {
                if (i > start)
                {
                    names.Add(Encoding.UTF8.GetString(buffer, start, i - start));
                }
                start = i + 1;
            }
        }
        return names;
    }

    /// <summary>An attribute's value, or null when it is gone (ENODATA) or unreadable.</summary>
    public static byte[]? Get(string path, string name)
    {
        var size = lgetxattr(path, name, null, 0);
        if (size < 0)
        {
            return null;
        }
        var buffer = new byte[Math.Min((int)size, MaxBytes)];
        size = lgetxattr(path, name, buffer, (nuint)buffer.Length);
        if (size < 0 && Marshal.GetLastPInvokeError() == FileErrno.ERANGE)
        {
            buffer = new byte[MaxBytes];
            size = lgetxattr(path, name, buffer, (nuint)buffer.Length);
        }
        return size < 0 ? null : buffer.AsSpan(0, (int)size).ToArray();
    }

    /// <summary>Sets an attribute on an open file; <paramref name="path"/> only names it in errors.</summary>
    public static void Set(SafeHandle file, string path, string name, ReadOnlySpan<byte> value)
    {
        int rc;
        unsafe
        {
            fixed (byte* v = value)
            {
                rc = fsetxattr(file, name, v, (nuint)value.Length, 0);
            }
        }
        if (rc != 0)
        {
            throw new NativeFileException($"setting attribute {name} on", Marshal.GetLastPInvokeError(), path);
        }
    }

    /// <summary>Size of the name list, or -1 with errno (ENOTSUP, ERANGE, ENOENT, ...).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint llistxattr(string path, byte[]? list, nuint size);

    /// <summary>Size of the value, or -1 with errno (ENODATA, ENOTSUP, ERANGE, ENOENT, ...).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint lgetxattr(string path, string name, byte[]? value, nuint size);

    /// <summary>0 or -1 with errno (ENOSPC/EDQUOT: no room for it, ENOTSUP, ERANGE: name or value too long, EPERM).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int fsetxattr(SafeHandle fd, string name, byte* value, nuint size, int flags);
}
