using System.Globalization;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Volumes;

/// <summary>
/// A volume on the host: a sparse ext4 image (<c>{StateDir}/volumes/{id}/volume.img</c>) loop-mounted at
/// <c>{StateDir}/volumes/{id}/data</c>. Its size is a hard limit: a write past it fails with ENOSPC inside the
/// sandbox and 507 through the content API.
/// </summary>
/// <remarks>
/// Why an image and not a directory with a project quota: this host's kernel has neither XFS quota support nor
/// a working ext4 project quota (measured 2026-11-28 for the sandbox disks, Runtimes/Host/SandboxDisk.cs; re-checked
/// for volumes 2026-12-06: an image made with <c>mkfs.ext4 -O quota,project</c> fails <c>mount -o prjquota</c> with
/// "The kernel was not built with CONFIG_QUOTA and CONFIG_QFMT_V2"), so a directory would have no bound. Unlike a sandbox disk the image has a journal: a volume outlives its sandboxes and should
/// survive a host crash as a filesystem that mounts again. The root directory is owned by the sandboxes' root
/// (<see cref="IdMapping.Default"/>) with mode 0777, so a template's unprivileged user can write too; files keep
/// the host ids of whoever wrote them, which every sandbox maps alike (one remap range), so what one sandbox's user
/// wrote is the next one's. <c>lost+found</c> is removed: it is mkfs's, not the user's. The mount has nodev and
/// nosuid, and the <c>volumes</c> directory is 0700: host users other than root cannot reach a volume.
/// </remarks>
internal sealed class VolumeDisks(string stateDir)
{
    /// <summary>The smallest image: ext4 with a journal needs a few MiB for itself.</summary>
    public const long MinimumBytes = 16L * 1024 * 1024;

    public string Root { get; } = Path.Combine(stateDir, "volumes");

    public string DirectoryOf(string volumeId) => Path.Combine(Root, volumeId);

    public string ImageOf(string volumeId) => Path.Combine(DirectoryOf(volumeId), "volume.img");

    /// <summary>Where the volume's files are on the host (the mount of its image).</summary>
    public string DataOf(string volumeId) => Path.Combine(DirectoryOf(volumeId), "data");

    /// <summary>Makes and mounts a new volume's image; on failure nothing of it is left.</summary>
    public async Task CreateAsync(string volumeId, long sizeBytes, CancellationToken cancellationToken)
    {
        EnsureRoot();
        var directory = DirectoryOf(volumeId);
        Directory.CreateDirectory(directory);
        try
        {
            using (var file = new FileStream(ImageOf(volumeId), FileMode.CreateNew, FileAccess.Write))
            {
                file.SetLength(Math.Max(sizeBytes, MinimumBytes)); // sparse: host space only as it fills
            }
            var root = IdMapping.Default.ToHost(0).ToString(CultureInfo.InvariantCulture);
            // -m 0: the whole size is the user's; root_owner: the sandboxes' root owns /; no discard (a sparse file);
            // lazy journal: a fresh sparse file reads as zeros already, and zeroing the journal made a new 1 GiB
            // volume take 33 MiB of host disk instead of 664 KiB (measured 2026-12-06; mkfs 0.04-0.11 s either way).
            var mkfs = await ExternalCommand.RunAsync("mkfs.ext4",
                ["-q", "-F", "-m", "0", "-b", "4096", "-E", $"lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner={root}:{root}", ImageOf(volumeId)],
                cancellationToken);
            if (!mkfs.Succeeded)
            {
                throw new IOException($"mkfs.ext4 of volume {volumeId} failed: {mkfs.Describe()}");
            }
            await EnsureMountedAsync(volumeId, cancellationToken);
            var data = DataOf(volumeId);
            Files.ChangeMode(data, 0x1FF); // 0777
            var lostFound = Path.Combine(data, "lost+found");
            if (Directory.Exists(lostFound))
            {
                Directory.Delete(lostFound);
            }
        }
        catch
        {
            await RemoveAsync(volumeId, CancellationToken.None);
            throw;
        }
    }

    /// <summary>Mounts the volume's image unless it is mounted (after a daemon or host restart). False when it has no image.</summary>
    public async Task<bool> EnsureMountedAsync(string volumeId, CancellationToken cancellationToken)
    {
        var data = DataOf(volumeId);
        if (MountTable.IsMountPoint(data))
        {
            return true;
        }
        var image = ImageOf(volumeId);
        if (!File.Exists(image))
        {
            return false;
        }
        Directory.CreateDirectory(data);
        try
        {
            LoopMounts.Mount(image, data, "ext4", Mounts.MS_NODEV | Mounts.MS_NOSUID | LoopMounts.MS_NOATIME);
            return true;
        }
        catch (NotSupportedException)
        {
            // A kernel without LOOP_CONFIGURE: util-linux's mount attaches the device the older way.
        }
        var mount = await ExternalCommand.RunAsync("mount", ["-t", "ext4", "-o", "loop,nodev,nosuid,noatime", image, data], cancellationToken);
        return mount.Succeeded ? true : throw new IOException($"loop mount of volume {volumeId} failed: {mount.Describe()}");
    }

    /// <summary>
    /// Unmounts the volume (lazily when busy: a sandbox being torn down may still hold a bind of it, and its loop
    /// device goes with the last user, by autoclear) and deletes its image and directory. Idempotent.
    /// </summary>
    public Task RemoveAsync(string volumeId, CancellationToken cancellationToken)
    {
        var data = DataOf(volumeId);
        for (var round = 0; round < 8 && MountTable.IsMountPoint(data); round++)
        {
            var errno = Mounts.Unmount(data, Mounts.UMOUNT_NOFOLLOW);
            if (errno == Errno.EBUSY)
            {
                errno = Mounts.Unmount(data, Mounts.MNT_DETACH | Mounts.UMOUNT_NOFOLLOW);
            }
            if (errno is not (0 or Errno.EINVAL or Errno.ENOENT))
            {
                throw Errno.Exception("umount", data, errno);
            }
        }
        if (MountTable.IsMountPoint(data))
        {
            // Never delete recursively through a mount: it would delete the volume's files in place.
            throw new IOException($"volume {volumeId} is still mounted at {data}");
        }
        var directory = DirectoryOf(volumeId);
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }
        return Task.CompletedTask;
    }

    /// <summary>The ids that have a directory here (for the leftover sweep at start).</summary>
    public IReadOnlyList<string> OnDisk() =>
        Directory.Exists(Root) ? [.. Directory.EnumerateDirectories(Root).Select(Path.GetFileName).OfType<string>()] : [];

    /// <summary>Bytes used and total of a mounted volume's filesystem, or null when it is not mounted.</summary>
    public (long Used, long Total)? Usage(string volumeId)
    {
        var data = DataOf(volumeId);
        if (!MountTable.IsMountPoint(data))
        {
            return null;
        }
        var drive = new DriveInfo(data);
        return (drive.TotalSize - drive.TotalFreeSpace, drive.TotalSize);
    }

    private void EnsureRoot()
    {
        Directory.CreateDirectory(Root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(Root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }
}
