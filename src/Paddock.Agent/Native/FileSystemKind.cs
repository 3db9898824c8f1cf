using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>
/// statfs(2)'s filesystem type of a path, to tell network filesystems apart: inotify sees only the changes made
/// through this kernel, so on NFS, SMB or FUSE a watch may miss events, and E2B refuses such watches unless the
/// caller allows them.
/// </summary>
internal static partial class FileSystemKind
{
    // Magic numbers from linux/magic.h (and fs/smb/client for CIFS/SMB2).
    private const long NfsMagic = 0x6969;
    private const long SmbMagic = 0x517B;
    private const long CifsMagic = 0xFF534D42;
    private const long Smb2Magic = 0xFE534D42;
    private const long FuseMagic = 0x65735546;
    private const long CodaMagic = 0x73757245;
    private const long AfsMagic = 0x5346414F;
    private const long CephMagic = 0x00C36400;
    private const long V9fsMagic = 0x01021997;

    /// <summary>The f_type of the filesystem holding <paramref name="path"/>, or null with the errno.</summary>
    public static long? TryGetType(string path, out int errno)
    {
        // struct statfs is 120 bytes on x86_64 and arm64; f_type is its first field, a long, on both.
        Span<byte> buffer = stackalloc byte[256];
        int rc;
        unsafe
        {
            fixed (byte* p = buffer)
            {
                rc = statfs(path, p);
            }
        }
        if (rc != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }
        errno = 0;
        return MemoryMarshal.Read<long>(buffer);
    }

    /// <summary>The name of a network filesystem type, or null for a local one.</summary>
    public static string? NetworkName(long type) => (type & 0xFFFFFFFF) switch
    {
        NfsMagic => "nfs",
        SmbMagic => "smb",
        CifsMagic => "cifs",
        Smb2Magic => "smb2",
        FuseMagic => "fuse",
        CodaMagic => "coda",
        AfsMagic => "afs",
        CephMagic => "ceph",
        V9fsMagic => "9p",
        _ => null,
    };

    /// <summary>0 or -1 with errno (ENOENT, ENOTDIR, EACCES, ELOOP, ENOSYS).</summary>
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int statfs(string path, byte* buffer);
}
