using System.IO.Enumeration;
using System.Runtime.InteropServices;

namespace Paddock.Daemon.Native;

/// <summary>
/// File calls .NET does not expose: owner and inode (statx(2)), lchown(2), extended attributes
/// (lgetxattr(2)/lsetxattr(2)), an atomic exchange of two paths (renameat2(2)), a copy that keeps a file's holes, and
/// walks of a tree that never enter a symbolic link. None of the metadata calls follows a symbolic link at the final
/// path component.
/// </summary>
internal static partial class Files
{
    private const int AT_FDCWD = -100;
    private const int AT_SYMLINK_NOFOLLOW = 0x100;
    private const uint STATX_BASIC_STATS = 0x7ff;

    /// <summary>S_IFMT and the file types of stat(2).</summary>
    public const uint S_IFMT = 0xF000;
    public const uint S_IFDIR = 0x4000;
    public const uint S_IFLNK = 0xA000;
    public const uint S_IFREG = 0x8000;

    /// <summary>What statx(2) says about a path, without following a final symbolic link.</summary>
    public readonly record struct Status(uint Uid, uint Gid, uint Mode, ulong Inode, uint DevMajor, uint DevMinor, ulong Size, ulong Blocks, uint LinkCount,
        uint RdevMajor = 0, uint RdevMinor = 0)
    {
        public uint Type => Mode & S_IFMT;

        public bool IsDirectory => Type == S_IFDIR;

        public bool IsSymlink => Type == S_IFLNK;

        /// <summary>Bytes allocated on disk (st_blocks counts 512-byte units whatever the block size).</summary>
        public long AllocatedBytes => (long)Blocks * 512;
    }

    /// <summary>statx(2) of <paramref name="path"/>: 0, or errno (ENOENT when it does not exist).</summary>
    public static unsafe int TryStat(string path, out Status status)
    {
        // struct statx is 256 bytes and has the same layout on every architecture (linux/stat.h).
        var buffer = stackalloc byte[256];
        if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buffer) != 0)
        {
            status = default;
            return Marshal.GetLastPInvokeError();
        }
        status = new Status(
            Uid: *(uint*)(buffer + 0x14),
            Gid: *(uint*)(buffer + 0x18),
            Mode: *(ushort*)(buffer + 0x1C),
            Inode: *(ulong*)(buffer + 0x20),
            DevMajor: *(uint*)(buffer + 0x88),
            DevMinor: *(uint*)(buffer + 0x8C),
            Size: *(ulong*)(buffer + 0x28),
            Blocks: *(ulong*)(buffer + 0x30),
            LinkCount: *(uint*)(buffer + 0x10),
            RdevMajor: *(uint*)(buffer + 0x80),
            RdevMinor: *(uint*)(buffer + 0x84));
        return 0;
    }

    /// <summary>statx(2), throwing an <see cref="IOException"/> naming the path when it fails.</summary>
    public static Status Stat(string path)
    {
        var errno = TryStat(path, out var status);
        return errno == 0 ? status : throw Errno.Exception("statx", path, errno);
    }

    /// <summary>
    /// lchown(2). Note for callers: the kernel clears set-user-ID and set-group-ID bits of a regular file when its
    /// owner changes (chown(2), "since Linux 2.2.13, root is treated like other users"), and drops its
    /// security.capability attribute; restore both afterwards.
    /// </summary>
    public static void ChangeOwner(string path, uint uid, uint gid)
    {
        if (lchown(path, uid, gid) != 0)
        {
            throw Errno.Exception("lchown", path, Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>chmod(2) with the full 12 mode bits (.NET's File.SetUnixFileMode does this too, but follows links).</summary>
    public static void ChangeMode(string path, uint mode)
    {
        if (chmod(path, mode & 0xFFF) != 0)
        {
            throw Errno.Exception("chmod", path, Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>The value of extended attribute <paramref name="name"/>, or null when the file has none (ENODATA).</summary>
    public static unsafe byte[]? GetAttribute(string path, string name)
    {
        var buffer = new byte[256];
        fixed (byte* p = buffer)
        {
            var n = lgetxattr(path, name, p, (nuint)buffer.Length);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                return errno == Errno.ENODATA ? null : throw Errno.Exception("lgetxattr " + name, path, errno);
            }
            return buffer.AsSpan(0, (int)n).ToArray();
        }
    }

    /// <summary>Sets extended attribute <paramref name="name"/>.</summary>
    public static unsafe void SetAttribute(string path, string name, byte[] value)
    {
        fixed (byte* p = value)
        {
            if (lsetxattr(path, name, p, (nuint)value.Length, 0) != 0)
            {
                throw Errno.Exception("lsetxattr " + name, path, Marshal.GetLastPInvokeError());
            }
        }
    }

    private const int SEEK_DATA = 3;
    private const int SEEK_HOLE = 4;

    /// <summary>
    /// Copies <paramref name="source"/> to a new file <paramref name="destination"/> of the same length, keeping its holes:
    /// only the ranges that hold data (lseek(2) SEEK_DATA/SEEK_HOLE) are copied, in the kernel (copy_file_range(2)), so
    /// a sparse image of gigabytes with a megabyte of data costs a megabyte. Returns the bytes copied.
    /// </summary>
    public static long CopySparse(string source, string destination)
    {
        using var input = File.OpenHandle(source, FileMode.Open, FileAccess.Read);
        using var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0);
        var length = RandomAccess.GetLength(input);
        output.SetLength(length); // sparse: no blocks until written
        long copied = 0;
        var offset = 0L;
        // Bounded: every round moves offset forward to the end of a data range, or ends.
        while (offset < length)
        {
            var data = lseek(input, offset, SEEK_DATA);
            if (data < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.ENXIO)
                {
                    break; // no data after offset
                }
                throw Errno.Exception("lseek SEEK_DATA", source, errno);
            }
            var hole = lseek(input, data, SEEK_HOLE);
            if (hole < 0)
            {
                throw Errno.Exception("lseek SEEK_HOLE", source, Marshal.GetLastPInvokeError());
            }
            var from = data;
            var to = data;
            while (from < hole)
            {
                var n = copy_file_range(input, ref from, output.SafeFileHandle, ref to, (nuint)(hole - from), 0);
                if (n < 0)
                {
                    throw Errno.Exception("copy_file_range to " + destination + " from", source, Marshal.GetLastPInvokeError());
                }
                if (n == 0)
                {
                    throw new IOException($"{source} ended at {from} while copying it to {destination}, before its length of {length} bytes");
                }
            }
            copied += hole - data;
            offset = hole;
        }
        return copied;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial long lseek(Microsoft.Win32.SafeHandles.SafeFileHandle fd, long offset, int whence);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint copy_file_range(Microsoft.Win32.SafeHandles.SafeFileHandle fdIn, ref long offIn,
        Microsoft.Win32.SafeHandles.SafeFileHandle fdOut, ref long offOut, nuint length, uint flags);

    private const uint RENAME_EXCHANGE = 2;

    /// <summary>
    /// Swaps the files at two paths in one step (renameat2(2) with RENAME_EXCHANGE): a reader of either path finds a
    /// file at every moment. 0, or errno (EINVAL where the filesystem cannot exchange).
    /// </summary>
    public static int TryExchange(string path, string otherPath)
    {
        return renameat2(AT_FDCWD, path, AT_FDCWD, otherPath, RENAME_EXCHANGE) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int renameat2(int olddirfd, string oldpath, int newdirfd, string newpath, uint flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int lchown(string path, uint owner, uint group);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int chmod(string path, uint mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial nint lgetxattr(string path, string name, byte* value, nuint size);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int lsetxattr(string path, string name, byte* value, nuint size, int flags);

    /// <summary>
    /// Every entry beneath <paramref name="directory"/> at any depth (or only what is neither a directory nor a link), where a symbolic link
    /// is an entry of its own and is never entered; directories it may not read are left out. .NET's recursive
    /// enumeration (<c>RecurseSubdirectories</c>, <c>SearchOption.AllDirectories</c>) enters a link to a directory: its
    /// walk of a sandbox's writable layer that holds <c>ln -s / x</c> walked the host, and through /proc's links to
    /// roots and working directories it never ended (seen: 800,000 host paths held, a core busy, in a test run).
    /// </summary>
    public static IEnumerable<string> Beneath(string directory, bool filesOnly = false)
    {
        var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = 0 };
        return new FileSystemEnumerable<string>(directory, (ref FileSystemEntry entry) => entry.ToFullPath(), options)
        {
            ShouldRecursePredicate = (ref FileSystemEntry entry) => (entry.Attributes & FileAttributes.ReparsePoint) == 0,
            ShouldIncludePredicate = filesOnly
                ? (ref FileSystemEntry entry) => !entry.IsDirectory && (entry.Attributes & FileAttributes.ReparsePoint) == 0
                : null,
        };
    }

    /// <summary>
    /// Bytes allocated beneath <paramref name="directory"/> (what a writable layer or a layer takes on disk), a file with
    /// several hard links counted once, no symbolic link followed; 0 when the directory does not exist (a sandbox
    /// destroyed while it was counted).
    /// </summary>
    public static long AllocatedBytesBeneath(string directory, CancellationToken cancellationToken = default)
    {
        var seen = new HashSet<(ulong, uint, uint)>();
        long total = 0;
        try
        {
            foreach (var path in Beneath(directory))
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (TryStat(path, out var s) == 0 && (s.LinkCount <= 1 || seen.Add((s.Inode, s.DevMajor, s.DevMinor))))
                {
                    total += s.AllocatedBytes;
                }
            }
        }
        catch (DirectoryNotFoundException)
        {
            return 0;
        }
        return total;
    }

    /// <summary>
    /// fsync(2)s every regular file under <paramref name="directory"/>, so that what a crash of the host must not lose
    /// (a paused sandbox's memory image) is on disk before a rename or marker makes it count.
    /// </summary>
    public static void SyncTree(string directory)
    {
        foreach (var path in Beneath(directory, filesOnly: true))
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
            file.Flush(flushToDisk: true);
        }
    }

    private const int LOCK_EX = 2;
    private const int LOCK_NB = 4;

    /// <summary>
    /// flock(2) LOCK_EX|LOCK_NB on an open file: 0, or errno (EAGAIN when another open file description holds it, in
    /// this process or another). The lock lasts until the handle is closed, or the process ends however it ends.
    /// </summary>
    public static int TryLockExclusive(Microsoft.Win32.SafeHandles.SafeFileHandle file)
    {
        return flock(file, LOCK_EX | LOCK_NB) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int flock(Microsoft.Win32.SafeHandles.SafeFileHandle fd, int operation);
}
