using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>What lstat(2)/stat(2) say about a path: the fields the agent reports (.NET's FileSystemInfo has no owner).</summary>
internal readonly partial record struct FileStatus(uint Mode, uint Uid, uint Gid, long Size, long ModifiedSeconds, long ModifiedNanoseconds)
{
    public const uint TypeMask = 0xF000; // S_IFMT
    public const uint TypeFifo = 0x1000;
    public const uint TypeCharDevice = 0x2000;
    public const uint TypeDirectory = 0x4000;
    public const uint TypeBlockDevice = 0x6000;
    public const uint TypeRegular = 0x8000;
    public const uint TypeSymlink = 0xA000;
    public const uint TypeSocket = 0xC000;

    public uint Type => Mode & TypeMask;

    public bool IsDirectory => Type == TypeDirectory;

    public bool IsRegular => Type == TypeRegular;

    public bool IsSymlink => Type == TypeSymlink;

    /// <summary>
    /// lstat(2) (<paramref name="followSymlinks"/> false) or stat(2) of <paramref name="path"/>.
    /// Returns the errno instead of throwing: ENOENT is an everyday answer here, not an exception.
    /// </summary>
    public static int TryGet(string path, bool followSymlinks, out FileStatus status)
    {
        // struct stat is 144 bytes on x86_64 and 128 on arm64; 256 covers both with room to spare.
        Span<byte> buffer = stackalloc byte[256];
        buffer.Clear();
        int rc;
        unsafe
        {
            fixed (byte* p = buffer)
            {
                rc = Call(path, followSymlinks, p);
            }
        }
        if (rc != 0)
        {
            status = default;
            return Marshal.GetLastPInvokeError();
        }
        status = Parse(buffer);
        return 0;
    }

    /// <summary>Like <see cref="TryGet"/>, but throws <see cref="NativeFileException"/> on failure.</summary>
    public static FileStatus Get(string path, bool followSymlinks)
    {
        var errno = TryGet(path, followSymlinks, out var status);
        return errno == 0 ? status : throw new NativeFileException(followSymlinks ? "stat" : "lstat", errno, path);
    }

    // glibc exports lstat/stat as symbols only since 2.33 (Debian 12 has 2.36); older glibc has only the versioned
    // __lxstat/__xstat wrappers. The agent runs against the sandbox template's libc, which may be older, so it
    // falls back once and remembers.
    private static volatile bool _useVersionedWrappers;

    private static unsafe int Call(string path, bool follow, byte* buffer)
    {
        if (!_useVersionedWrappers)
        {
            try
            {
                return follow ? stat(path, buffer) : lstat(path, buffer);
            }
            catch (EntryPointNotFoundException)
            {
                _useVersionedWrappers = true;
            }
        }
        // _STAT_VER is 1 on x86_64 and 0 on arm64 (glibc sysdeps/unix/sysv/linux/*/xstatver.h).
        var version = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 1 : 0;
        return follow ? __xstat(version, path, buffer) : __lxstat(version, path, buffer);
    }

    private static FileStatus Parse(ReadOnlySpan<byte> b)
    {
        // Offsets of the kernel's struct stat, which glibc and musl both use on these 64-bit targets:
        // x86_64: arch/x86/include/uapi/asm/stat.h; arm64: include/uapi/asm-generic/stat.h.
        switch (RuntimeInformation.ProcessArchitecture)
        {
            case Architecture.X64:
                return new FileStatus(
                    Mode: Read<uint>(b, 24), Uid: Read<uint>(b, 28), Gid: Read<uint>(b, 32), Size: Read<long>(b, 48),
                    ModifiedSeconds: Read<long>(b, 88), ModifiedNanoseconds: Read<long>(b, 96));
            case Architecture.Arm64:
                return new FileStatus(
                    Mode: Read<uint>(b, 16), Uid: Read<uint>(b, 24), Gid: Read<uint>(b, 28), Size: Read<long>(b, 48),
                    ModifiedSeconds: Read<long>(b, 88), ModifiedNanoseconds: Read<long>(b, 96));
            default:
                throw new PlatformNotSupportedException($"struct stat layout of {RuntimeInformation.ProcessArchitecture} is not known to the agent");
        }
    }

    private static T Read<T>(ReadOnlySpan<byte> b, int offset)
        where T : unmanaged => MemoryMarshal.Read<T>(b[offset..]);

    /// <summary>0 on success; -1 with errno (ENOENT, ENOTDIR, EACCES, ELOOP, ENAMETOOLONG, ENOMEM, EOVERFLOW).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int lstat(string path, byte* buffer);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int stat(string path, byte* buffer);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int __lxstat(int version, string path, byte* buffer);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int __xstat(int version, string path, byte* buffer);
}
