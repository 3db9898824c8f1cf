using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Paddock.Daemon.Native;

/// <summary>
/// File operations confined to one directory tree that someone else (a sandbox) can write: every path is resolved by
/// <c>openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)</c> (Linux 5.6), so a symlink or <c>..</c>
/// planted in the tree resolves as if the tree were <c>/</c> and never reaches the host's files, and the last step of
/// every change (create, remove, chown) is an <c>*at</c> call on a directory descriptor with a single name and
/// no-follow flags, so swapping a directory for a symlink between two calls gains nothing.
/// </summary>
internal static partial class BeneathRoot
{
    public const int O_RDONLY = 0;
    public const int O_WRONLY = 0x1;
    public const int O_CREAT = 0x40;
    public const int O_EXCL = 0x80;
    public const int O_TRUNC = 0x200;
    public const int O_DIRECTORY = 0x10000;
    public const int O_NOFOLLOW = 0x20000;
    public const int O_CLOEXEC = 0x80000;
    public const int O_PATH = 0x200000;

    private const ulong RESOLVE_NO_XDEV = 0x01;
    private const ulong RESOLVE_NO_MAGICLINKS = 0x02;
    private const ulong RESOLVE_IN_ROOT = 0x10;
    private const long SYS_openat2 = 437; // x86_64
    private const int AT_SYMLINK_NOFOLLOW = 0x100;
    private const int AT_REMOVEDIR = 0x200;
    private const int AT_EMPTY_PATH = 0x1000;
    private const uint STATX_BASIC_STATS = 0x7FF;

    /// <summary>What statx says of an entry (ids as on the host).</summary>
    public readonly record struct Entry(uint Mode, uint Uid, uint Gid, long Size, DateTimeOffset Atime, DateTimeOffset Mtime, DateTimeOffset Ctime)
    {
        public uint Type => Mode & Files.S_IFMT;
    }

    /// <summary>Opens <paramref name="path"/> (relative to <paramref name="root"/>) inside the tree; errno on failure.</summary>
    public static unsafe int Open(SafeFileHandle root, string path, int flags, uint mode, out SafeFileHandle handle)
    {
        var how = stackalloc ulong[3];
        how[0] = (ulong)(flags | O_CLOEXEC);
        how[1] = (flags & O_CREAT) != 0 ? mode : 0;
        how[2] = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
        var relative = path.Length == 0 ? "." : path;
        var bytes = System.Text.Encoding.UTF8.GetBytes(relative + "\0");
        long fd;
        fixed (byte* p = bytes)
        {
            fd = syscall(SYS_openat2, root.DangerousGetHandle(), (nint)p, (nint)how, 24);
        }
        if (fd < 0)
        {
            handle = new SafeFileHandle();
            return Marshal.GetLastPInvokeError();
        }
        handle = new SafeFileHandle((nint)fd, ownsHandle: true);
        return 0;
    }

    /// <summary>Opens a plain directory (the tree's root) for use as <c>root</c> above.</summary>
    public static SafeFileHandle OpenRoot(string directory)
    {
        var handle = open(directory, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (handle.IsInvalid)
        {
            var errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            throw Errno.Exception("open", directory, errno);
        }
        return handle;
    }

    /// <summary>Opens the single name <paramref name="name"/> in <paramref name="directory"/>, never following a symlink there.</summary>
    public static int OpenAt(SafeFileHandle directory, string name, int flags, uint mode, out SafeFileHandle handle)
    {
        handle = openat(directory, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
        return handle.IsInvalid ? Marshal.GetLastPInvokeError() : 0;
    }

    /// <summary>statx of <paramref name="name"/> in <paramref name="directory"/> (the descriptor itself when empty), no symlink followed.</summary>
    public static unsafe int Stat(SafeFileHandle directory, string name, out Entry entry)
    {
        var buffer = stackalloc byte[256];
        var flags = AT_SYMLINK_NOFOLLOW | (name.Length == 0 ? AT_EMPTY_PATH : 0);
        if (statx(directory, name, flags, STATX_BASIC_STATS, buffer) != 0)
        {
            entry = default;
            return Marshal.GetLastPInvokeError();
        }
        var span = new ReadOnlySpan<byte>(buffer, 256);
        static DateTimeOffset Time(ReadOnlySpan<byte> s, int offset) =>
            DateTimeOffset.FromUnixTimeSeconds(BinaryPrimitives.ReadInt64LittleEndian(s[offset..]))
                .AddTicks(BinaryPrimitives.ReadUInt32LittleEndian(s[(offset + 8)..]) / 100);
        entry = new Entry(
            BinaryPrimitives.ReadUInt16LittleEndian(span[28..]),
            BinaryPrimitives.ReadUInt32LittleEndian(span[20..]),
            BinaryPrimitives.ReadUInt32LittleEndian(span[24..]),
            (long)BinaryPrimitives.ReadUInt64LittleEndian(span[40..]),
            Time(span, 64), Time(span, 112), Time(span, 96));
        return 0;
    }

    /// <summary>The target of the symlink <paramref name="link"/> (an <c>O_PATH | O_NOFOLLOW</c> descriptor of it).</summary>
    public static unsafe string? ReadLink(SafeFileHandle link)
    {
        var buffer = stackalloc byte[4096];
        var n = readlinkat(link, "", buffer, 4096);
        return n < 0 ? null : System.Text.Encoding.UTF8.GetString(buffer, (int)n);
    }

    public static int MakeDirectory(SafeFileHandle directory, string name, uint mode) =>
        mkdirat(directory, name, mode) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>chown of <paramref name="name"/> in <paramref name="directory"/> (the descriptor itself when empty), no symlink followed.</summary>
    public static int ChangeOwner(SafeFileHandle directory, string name, uint uid, uint gid) =>
        fchownat(directory, name, uid, gid, AT_SYMLINK_NOFOLLOW | (name.Length == 0 ? AT_EMPTY_PATH : 0)) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>chmod through a descriptor (an <c>O_PATH</c> one of a file or directory works through /proc, as runc does).</summary>
    public static int ChangeMode(SafeFileHandle handle, uint mode) =>
        chmod($"/proc/self/fd/{handle.DangerousGetHandle()}", mode) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>
    /// Removes <paramref name="name"/> from <paramref name="directory"/>, a directory with everything in it, by
    /// descriptors only (a symlink inside is removed, never followed). Bounded in depth.
    /// </summary>
    public static int Remove(SafeFileHandle directory, string name, int depth = 0)
    {
        var errno = Stat(directory, name, out var entry);
        if (errno != 0)
        {
            return errno;
        }
        if (entry.Type != Files.S_IFDIR)
        {
            return unlinkat(directory, name, 0) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
        if (depth > 256)
        {
            return 40; // ELOOP: deeper than anything a person makes; refuse rather than recurse without end.
        }
        errno = OpenAt(directory, name, O_RDONLY | O_DIRECTORY, 0, out var child);
        using (child)
        {
            if (errno != 0)
            {
                return errno;
            }
            foreach (var entryName in Names(child))
            {
                errno = Remove(child, entryName, depth + 1);
                if (errno is not (0 or Errno.ENOENT))
                {
                    return errno;
                }
            }
        }
        return unlinkat(directory, name, AT_REMOVEDIR) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>
    /// The names in an open directory. Listed through /proc/self/fd/N, which names the opened directory itself (not a
    /// path that could be swapped).
    /// </summary>
    public static IReadOnlyList<string> Names(SafeFileHandle directory) =>
        [.. new DirectoryInfo($"/proc/self/fd/{directory.DangerousGetHandle()}").EnumerateFileSystemInfos().Select(i => i.Name)];

    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number, nint a1, nint a2, nint a3, nint a4);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial SafeFileHandle open(string path, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial SafeFileHandle openat(SafeFileHandle dirfd, string path, int flags, uint mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int statx(SafeFileHandle dirfd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial nint readlinkat(SafeFileHandle dirfd, string path, byte* buffer, nuint size);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mkdirat(SafeFileHandle dirfd, string path, uint mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int fchownat(SafeFileHandle dirfd, string path, uint owner, uint group, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int chmod(string path, uint mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int unlinkat(SafeFileHandle dirfd, string path, int flags);
}
