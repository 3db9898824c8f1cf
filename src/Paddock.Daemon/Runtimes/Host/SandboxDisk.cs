using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// Gives a sandbox's writable layer a filesystem of its own, the size of its disk limit: a sparse ext4 image in the
/// sandbox directory, loop-mounted at <see cref="SandboxLayout.DiskMount"/>, which holds the overlay's upper and work
/// directories. A full image fails the sandbox's writes with ENOSPC, and its inode table bounds the number of files.
/// </summary>
/// <remarks>
/// Why not project quotas on one shared filesystem, as Docker's overlay2 does: this host's kernel has neither XFS quota
/// support ("XFS: quota support not available in this kernel") nor CONFIG_QUOTA for ext4 (measured 2026-11-28). An
/// image costs about 30 ms of mkfs per create and 30 ms of umount per destroy (measured, 128 MiB to 20 GiB alike: lazy
/// inode tables, no journal); it is mounted with system calls (<see cref="LoopMounts"/>), not the mount program, which
/// cost about 40 ms. The image is sparse, so it takes host space only as it fills. The mount uses the loop driver's
/// autoclear, so unmounting it (as every destroy does with all mounts under the sandbox
/// directory, the overlay first because its path is longer) also frees the loop device. A create normally takes a
/// disk made ahead by <see cref="DiskStock"/>, and only makes one here when the stock has none of its size.
/// </remarks>
internal static class SandboxDisk
{
    /// <summary>ext4 needs a few MiB for itself; a smaller limit gets this much.</summary>
    public const long MinimumBytes = 8L * 1024 * 1024;

    /// <summary>The size of the image a disk limit of <paramref name="diskBytes"/> gets.</summary>
    public static long ImageBytes(long diskBytes) => Math.Max(diskBytes, MinimumBytes);

    public static Task CreateAsync(SandboxLayout layout, long diskBytes, int bytesPerInode, CancellationToken cancellationToken) =>
        CreateAsync(layout.DiskImage, layout.DiskMount, ImageBytes(diskBytes), bytesPerInode, cancellationToken);

    /// <summary>
    /// Makes a fresh sparse ext4 image of <paramref name="imageBytes"/> at <paramref name="image"/> (which must not
    /// exist) with mkfs and mounts it at <paramref name="mountPoint"/>. <paramref name="background"/>: mkfs runs at a
    /// lower CPU priority (nice 10), so that a disk made ahead yields to the creates it is made for.
    /// </summary>
    public static async Task CreateAsync(string image, string mountPoint, long imageBytes, int bytesPerInode, CancellationToken cancellationToken, bool background = false)
    {
        await MakeImageAsync(image, imageBytes, bytesPerInode, cancellationToken, background);
        await MountAsync(image, mountPoint, cancellationToken, background);
    }

    /// <summary>
    /// A copy of <paramref name="pristine"/> (an image <see cref="MakeImageAsync"/> made and nothing ever mounted) at
    /// <paramref name="image"/>, mounted at <paramref name="mountPoint"/>: the same disk as <see cref="CreateAsync"/>
    /// makes, byte for byte, for a tenth of mkfs's CPU (the image's holes are not copied; see <see cref="DiskStock"/>).
    /// </summary>
    public static async Task CreateFromPristineAsync(string pristine, string image, string mountPoint, CancellationToken cancellationToken, bool background = false)
    {
        Files.CopySparse(pristine, image);
        await MountAsync(image, mountPoint, cancellationToken, background);
    }

    /// <summary>A fresh sparse ext4 image of <paramref name="imageBytes"/> at <paramref name="image"/>, which must not exist.</summary>
    public static async Task MakeImageAsync(string image, long imageBytes, int bytesPerInode, CancellationToken cancellationToken, bool background = false)
    {
        using (var file = new FileStream(image, FileMode.CreateNew, FileAccess.Write))
        {
            file.SetLength(imageBytes); // sparse: no blocks until written
        }
        // No journal (the sandbox's files do not outlive a host crash anyway), no reserved blocks for root (the whole
        // limit is the sandbox's), lazy inode tables (mkfs writes a few KiB, whatever the size).
        var mkfs = await RunAsync(background, "mkfs.ext4",
            ["-q", "-F", "-m", "0", "-b", "4096", "-i", bytesPerInode.ToString(System.Globalization.CultureInfo.InvariantCulture),
             "-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard", image],
            cancellationToken);
        if (!mkfs.Succeeded)
        {
            throw new IOException($"mkfs.ext4 of {image} failed: {mkfs.Describe()}");
        }
    }

    private static async Task MountAsync(string image, string mountPoint, CancellationToken cancellationToken, bool background)
    {
        Directory.CreateDirectory(mountPoint);
        try
        {
            LoopMounts.Mount(image, mountPoint, "ext4", Mounts.MS_NODEV | Mounts.MS_NOSUID | LoopMounts.MS_NOATIME);
            return;
        }
        catch (NotSupportedException)
        {
            // A kernel without LOOP_CONFIGURE: util-linux's mount attaches the device the older way.
        }
        var mount = await RunAsync(background, "mount",
            ["-t", "ext4", "-o", "loop,nodev,nosuid,noatime", image, mountPoint], cancellationToken);
        if (!mount.Succeeded)
        {
            throw new IOException($"loop mount of {image} failed: {mount.Describe()}");
        }
    }

    private static Task<CommandResult> RunAsync(bool background, string program, string[] arguments, CancellationToken cancellationToken) =>
        ExternalCommand.RunAsync(program, arguments, cancellationToken, background: background);
}
