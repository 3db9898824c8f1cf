using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Paddock.Daemon.Native;

/// <summary>
/// Mounts a filesystem image through a loop device with system calls: a free device from <c>/dev/loop-control</c>, the
/// image attached with <c>LOOP_CONFIGURE</c> (Linux 5.8) and autoclear, then mount(2). This is what
/// <c>mount -o loop</c> does, without its process: util-linux also looks through every loop device in
/// <c>/sys/block</c> for one already backed by the image, and loop devices are never removed, only detached, so that
/// walk grew with every sandbox the host had ever made (1,021 devices here after the density bench, 2026-11-28).
/// </summary>
internal static partial class LoopMounts
{
    public const ulong MS_NOATIME = 0x400;

    private const ulong LOOP_CTL_GET_FREE = 0x4C82;
    private const ulong LOOP_CONFIGURE = 0x4C0A;
    private const uint LO_FLAGS_AUTOCLEAR = 4;
    private const int O_RDWR = 0x2;
    private const int O_CLOEXEC = 0x80000;
    private const int ENOTTY = 25;

    // struct loop_config (linux/loop.h): u32 fd, u32 block_size, struct loop_info64 (232 bytes), u64 reserved[8].
    private const int ConfigSize = 304;
    private const int InfoOffset = 8;
    private const int FlagsOffset = InfoOffset + 52;
    private const int FileNameOffset = InfoOffset + 56;
    private const int FileNameSize = 64;

    // Another process can take the device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE (EBUSY): ask again, a bounded number of times.
    private const int Attempts = 16;

    /// <summary>
    /// Attaches <paramref name="image"/> to a free loop device (detached again when its last user goes: the mount's
    /// unmount frees it) and mounts it at <paramref name="mountPoint"/>. Returns the device's path. Throws
    /// <see cref="NotSupportedException"/> where the kernel has no <c>LOOP_CONFIGURE</c>, and <see cref="IOException"/>
    /// for every other failure, with nothing left attached.
    /// </summary>
    public static string Mount(string image, string mountPoint, string fsType, ulong flags)
    {
        using var backing = Open(image);
        using var control = Open("/dev/loop-control");
        for (var attempt = 0; attempt < Attempts; attempt++)
        {
            var number = ioctl(control, LOOP_CTL_GET_FREE, 0);
            if (number < 0)
            {
                throw Errno.Exception("LOOP_CTL_GET_FREE", "/dev/loop-control", Marshal.GetLastPInvokeError());
            }
            var device = $"/dev/loop{number}";
            // Autoclear: a device attached but not mounted is detached when this handle closes; a mount holds it on.
            using var loop = Open(device);
            var configured = Configure(loop, backing, image);
            if (configured == Errno.EBUSY)
            {
                continue;
            }
            if (configured is Errno.EINVAL or ENOTTY)
            {
                throw new NotSupportedException($"LOOP_CONFIGURE on {device}: {Errno.Describe(configured)} (a kernel before 5.8?)");
            }
            if (configured != 0)
            {
                throw Errno.Exception("LOOP_CONFIGURE", device, configured);
            }
            var mounted = Mounts.Mount(device, mountPoint, fsType, flags, null);
            if (mounted != 0)
            {
                throw new IOException($"mount {device} ({image}) at {mountPoint}: {Errno.Describe(mounted)} (errno {mounted})", mounted);
            }
            return device;
        }
        throw new IOException($"no free loop device for {image} after {Attempts} attempts (each was taken by another process first)");
    }

    /// <summary>
    /// The loop device that backs <paramref name="image"/> now (<c>/dev/loopN</c>), or null: the device of a filesystem
    /// that was unmounted here but is still mounted in another mount namespace (one made while it was mounted holds a
    /// copy of it), so the kernel keeps the filesystem, and with it the device, alive. Reads every bound device's
    /// <c>loop/backing_file</c> in <c>/sys/block</c>: for a remount, not for a create (see the class).
    /// </summary>
    public static string? AttachedDevice(string image)
    {
        var full = Path.GetFullPath(image);
        foreach (var device in Directory.EnumerateFileSystemEntries("/sys/block", "loop*"))
        {
            string backing;
            try
            {
                backing = File.ReadAllText(Path.Combine(device, "loop", "backing_file")).TrimEnd('\n');
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Not bound (no loop/ directory), or detached while read.
                continue;
            }
            if (string.Equals(backing, full, StringComparison.Ordinal))
            {
                return "/dev/" + Path.GetFileName(device);
            }
        }
        return null;
    }

    private static unsafe int Configure(SafeFileHandle loop, SafeFileHandle backing, string image)
    {
        var config = stackalloc byte[ConfigSize];
        var span = new Span<byte>(config, ConfigSize);
        span.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(span, (uint)backing.DangerousGetHandle());
        BinaryPrimitives.WriteUInt32LittleEndian(span[FlagsOffset..], LO_FLAGS_AUTOCLEAR);
        // What losetup -l shows as the device's file (informational; the kernel keeps the backing file itself).
        var name = Encoding.UTF8.GetBytes(image);
        name.AsSpan(0, Math.Min(name.Length, FileNameSize - 1)).CopyTo(span.Slice(FileNameOffset, FileNameSize));
        return ioctl(loop, LOOP_CONFIGURE, (nint)config) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    private static SafeFileHandle Open(string path)
    {
        var handle = open(path, O_RDWR | O_CLOEXEC);
        if (handle.IsInvalid)
        {
            var errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            throw Errno.Exception("open", path, errno);
        }
        return handle;
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial SafeFileHandle open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(SafeFileHandle fd, ulong request, nint argument);
}
