using Microsoft.Extensions.Logging;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// A sandbox's root filesystem on the host, the same in every tier that serves the sandbox its files from the host:
/// an overlay of the template's read-only layers with a per-sandbox writable layer (<see cref="SandboxLayout.Upper"/>,
/// on the sandbox's own disk when it has one), plus its hosts and hostname files. Filesystem snapshots copy the
/// writable layer, so they have one format whichever tier made them.
/// </summary>
internal static class SandboxFilesystem
{
    /// <summary>overlayfs splits its options at ',' and lowerdir at ':'; a path with either cannot be named.</summary>
    public static void ValidatePathForOverlay(string path)
    {
        if (path.IndexOfAny([',', ':', '\\', '\n']) >= 0)
        {
            throw new ArgumentException($"path {path} cannot be used in an overlay mount: it contains ',', ':', '\\' or a newline");
        }
    }

    /// <summary>Throws <see cref="SandboxStartException"/> unless the spec names layers that exist and can be mounted.</summary>
    public static void ValidateTemplateLayers(SandboxSpec spec)
    {
        if (spec.TemplateLayers.Count == 0)
        {
            throw new SandboxStartException(spec.SandboxId, "the template has no layers");
        }
        foreach (var layer in spec.TemplateLayers)
        {
            ValidatePathForOverlay(layer);
            if (!Directory.Exists(layer))
            {
                throw new SandboxStartException(spec.SandboxId, $"template layer {layer} does not exist");
            }
        }
    }

    /// <summary>
    /// Creates the sandbox's directory, its metadata, its writable layer and the overlay mount over the template, and
    /// the hosts and hostname files, and its resolv.conf when <paramref name="resolvConf"/> is given (the sandbox has
    /// egress: <see cref="Networking.SandboxNetworks.ResolvConf"/>). Nothing of the template is copied: the overlay
    /// shows the template's files until the sandbox changes them.
    /// </summary>
    public static void Prepare(SandboxSpec spec, SandboxLayout layout, IdMapping map, string? resolvConf)
    {
        var root = map.ToHost(0);
        Directory.CreateDirectory(layout.Directory);
        new SandboxMetadata(spec.SandboxId, spec.TemplateLayers, DateTimeOffset.UtcNow, spec.Limits, spec.AllowInternetAccess)
        {
            VolumeDirectories = [.. spec.Mounts.Select(m => m.HostDirectory)],
        }.Write(layout.MetadataFile);

        // The overlay's root directory takes its owner and mode from the upper layer's: copy the template root's
        // (the top layer's: a snapshot layer carries the root directory as its sandbox last had it).
        var lowerRoot = Files.Stat(spec.TemplateLayers[0]);
        Directory.CreateDirectory(layout.Upper);
        Files.ChangeOwner(layout.Upper, lowerRoot.Uid, lowerRoot.Gid);
        Files.ChangeMode(layout.Upper, lowerRoot.Mode);
        Directory.CreateDirectory(layout.Work);
        Directory.CreateDirectory(layout.Rootfs);

        var errno = Mounts.Mount("overlay", layout.Rootfs, "overlay", Mounts.MS_NODEV,
            $"lowerdir={string.Join(':', spec.TemplateLayers)},upperdir={layout.Upper},workdir={layout.Work}");
        if (errno != 0)
        {
            throw Errno.Exception("mount overlay", layout.Rootfs, errno);
        }

        BindMounts(spec, layout);

        File.WriteAllText(layout.HostsFile, $"""
            127.0.0.1	localhost
            ::1	localhost ip6-localhost ip6-loopback
            127.0.1.1	{spec.Hostname}

            """);
        File.WriteAllText(layout.HostnameFile, spec.Hostname + "\n");
        var owned = new List<string> { layout.HostsFile, layout.HostnameFile };
        if (resolvConf is not null)
        {
            File.WriteAllText(layout.ResolvConfFile, resolvConf);
            owned.Add(layout.ResolvConfFile);
        }
        foreach (var file in owned)
        {
            // The sandbox's root may edit them, as in Docker.
            Files.ChangeOwner(file, root, root);
            Files.ChangeMode(file, 0b110_100_100);
        }
    }

    /// <summary>
    /// Binds each of the spec's host directories (volumes) at <see cref="SandboxLayout.MountSource"/>, inside the
    /// sandbox's directory, and the tier's config names that bind as the mount's source. Why a bind of its own: the
    /// gVisor tier's runsc runs in a mount namespace made once per host (GvisorMountNamespace), which sees only what is
    /// mounted later under the tier's shared directory, where sandbox directories live; a volume mounted elsewhere
    /// would be missing there. The runc tier takes the same path so both tiers have one. The destroy's
    /// <see cref="UnmountAllAsync"/> removes these binds with every other mount of the sandbox, and
    /// <see cref="RemoveDirectory"/> deletes nothing while one is still mounted, so a volume's files are never deleted
    /// through its bind.
    /// </summary>
    public static void BindMounts(SandboxSpec spec, SandboxLayout layout)
    {
        for (var i = 0; i < spec.Mounts.Count; i++)
        {
            var source = spec.Mounts[i].HostDirectory;
            if (!Directory.Exists(source))
            {
                throw new SandboxStartException(spec.SandboxId, $"the directory {source} to mount at {spec.Mounts[i].Path} does not exist");
            }
            var target = layout.MountSource(i);
            Directory.CreateDirectory(target);
            var errno = Mounts.Mount(source, target, null, Mounts.MS_BIND, null);
            if (errno != 0)
            {
                throw Errno.Exception("mount --bind", target, errno);
            }
        }
    }

    /// <summary>
    /// Mounts a paused sandbox's filesystem again as <see cref="Prepare"/> made it: its disk image (when it has one),
    /// its volumes' binds, and the overlay of its template's layers (from its metadata) with its kept writable layer. Idempotent: what is
    /// mounted already stays. Throws <see cref="IOException"/> when the metadata or a layer is missing.
    /// </summary>
    public static void Remount(SandboxLayout layout, ILogger logger)
    {
        var metadata = SandboxMetadata.TryRead(layout.MetadataFile)
            ?? throw new IOException($"sandbox '{layout.SandboxId}' has no readable metadata at {layout.MetadataFile}");
        var mounted = MountTable.Under(layout.Directory).ToHashSet(StringComparer.Ordinal);
        if (File.Exists(layout.DiskImage) && !mounted.Contains(layout.DiskMount))
        {
            Directory.CreateDirectory(layout.DiskMount);
            MountDisk(layout, logger);
        }
        // The volumes' binds: the pause's unmount took them with the rest, and the tier's config names these paths as
        // the sources of its volume mounts (BindMounts). Without them a resumed sandbox saw empty directories.
        var volumes = metadata.VolumeDirectories ?? [];
        for (var i = 0; i < volumes.Count; i++)
        {
            var target = layout.MountSource(i);
            if (mounted.Contains(target))
            {
                continue;
            }
            if (!Directory.Exists(volumes[i]))
            {
                throw new IOException($"volume directory {volumes[i]} of sandbox '{layout.SandboxId}' is gone");
            }
            Directory.CreateDirectory(target);
            var bound = Mounts.Mount(volumes[i], target, null, Mounts.MS_BIND, null);
            if (bound != 0)
            {
                throw Errno.Exception("mount --bind", target, bound);
            }
        }
        if (mounted.Contains(layout.Rootfs))
        {
            return;
        }
        foreach (var layer in metadata.TemplateLayers)
        {
            if (!Directory.Exists(layer))
            {
                throw new IOException($"template layer {layer} of sandbox '{layout.SandboxId}' is gone");
            }
        }
        Directory.CreateDirectory(layout.Rootfs);
        var errno = Mounts.Mount("overlay", layout.Rootfs, "overlay", Mounts.MS_NODEV,
            $"lowerdir={string.Join(':', metadata.TemplateLayers)},upperdir={layout.Upper},workdir={layout.Work}");
        if (errno == Errno.ENOENT)
        {
            // Seen twice on a runc resume (issue 15's MCP pause case) before MountDisk reused a still attached device;
            // should it come back, the message says which of the overlay's directories was missing and what was mounted.
            var missing = metadata.TemplateLayers.Append(layout.Upper).Append(layout.Work).Where(d => !Directory.Exists(d)).ToList();
            throw new IOException(
                $"mount overlay on {layout.Rootfs} failed with ENOENT; missing: {(missing.Count > 0 ? string.Join(", ", missing) : "none of its directories")}; "
                + $"mounted under the sandbox before: {(mounted.Count > 0 ? string.Join(", ", mounted) : "nothing")}; now: {string.Join(", ", MountTable.Under(layout.Directory))}");
        }
        if (errno != 0)
        {
            throw Errno.Exception("mount overlay", layout.Rootfs, errno);
        }
    }

    /// <summary>
    /// Mounts the sandbox's disk image again, on the loop device that still backs it if one does. That happens when a
    /// mount namespace made while the sandbox ran (a container's or a tier's, made by anyone on the host) still holds
    /// a copy of the disk's mount: the unmount here then succeeded, but the filesystem lives on in that copy, with
    /// what the sandbox wrote in its last seconds not yet on the image. A second loop device would mount a second,
    /// stale instance of it: measured (2026-12-07, `unshare -m sleep` started after the create), a file written just
    /// before the pause was gone after the resume, and an overlay whose upper directory was not yet on the image is the
    /// ENOENT seen twice on a runc resume. The same device gives the same filesystem, as it was.
    /// </summary>
    private static void MountDisk(SandboxLayout layout, ILogger logger)
    {
        const ulong flags = Mounts.MS_NODEV | Mounts.MS_NOSUID | LoopMounts.MS_NOATIME;
        if (LoopMounts.AttachedDevice(layout.DiskImage) is { } device)
        {
            var errno = Mounts.Mount(device, layout.DiskMount, "ext4", flags, null);
            if (errno == 0)
            {
                RuntimeLog.DiskStillAttached(logger, layout.SandboxId, device);
                return;
            }
            if (LoopMounts.AttachedDevice(layout.DiskImage) is not null)
            {
                // Still attached, yet not mountable: a fresh device would mount the stale instance, so refuse.
                throw Errno.Exception("mount " + device + " (still backing " + layout.DiskImage + ")", layout.DiskMount, errno);
            }
            // Detached in between: its filesystem was written out and released, so the image is whole again.
        }
        LoopMounts.Mount(layout.DiskImage, layout.DiskMount, "ext4", flags);
    }

    /// <summary>Unmounts everything under the sandbox's directory, longest path first (the overlay before its disk).</summary>
    public static async Task UnmountAllAsync(SandboxLayout layout, ILogger logger, CancellationToken cancellationToken)
    {
        foreach (var mountPoint in MountTable.Under(layout.Directory))
        {
            for (var attempt = 0; ; attempt++)
            {
                var errno = Mounts.Unmount(mountPoint, Mounts.UMOUNT_NOFOLLOW);
                if (errno is 0 or Errno.EINVAL or Errno.ENOENT)
                {
                    break;
                }
                if (errno == Errno.EBUSY && attempt < 50)
                {
                    // Processes of the sandbox that were just killed can hold it for a moment; 50 x 20 ms bounds that.
                    RuntimeLog.OverlayBusy(logger, layout.SandboxId);
                    await Task.Delay(20, cancellationToken);
                    continue;
                }
                if (errno == Errno.EBUSY)
                {
                    // Still busy after a second: detach it, so that it goes when its last user does.
                    errno = Mounts.Unmount(mountPoint, Mounts.MNT_DETACH | Mounts.UMOUNT_NOFOLLOW);
                    if (errno is 0 or Errno.EINVAL)
                    {
                        break;
                    }
                }
                throw Errno.Exception("umount", mountPoint, errno);
            }
        }
    }

    /// <summary>Deletes the sandbox's directory once nothing is mounted under it; throws when something still is.</summary>
    public static void RemoveDirectory(SandboxLayout layout)
    {
        var left = MountTable.Under(layout.Directory);
        if (left.Count > 0)
        {
            // Never delete recursively through a mount: it would delete what is mounted.
            throw new IOException($"sandbox '{layout.SandboxId}' still has mounts under {layout.Directory}: {string.Join(", ", left)}");
        }
        if (Directory.Exists(layout.Directory))
        {
            Directory.Delete(layout.Directory, recursive: true);
        }
    }

    /// <summary>
    /// The agent's own runtime files in the sandbox (its HTTP/2 hand-off sockets in /tmp, Paddock.Agent's
    /// H2cHandoff) belong to the agent process that made them: a sandbox started from the snapshot has its own
    /// agent, and without this every snapshot and every build step would add dead sockets to the layers.
    /// </summary>
    /// <summary>
    /// A filesystem snapshot of either tier: holds the sandbox still with <paramref name="pause"/> (runc's freezer,
    /// runsc's Sentry pause), copies its upper directory to <paramref name="destination"/> (<see cref="Templates.LayerCopy"/>:
    /// new inodes, so later writes never reach the copy), and resumes it whatever happens: a paused sandbox is a hung
    /// sandbox. The caller holds the sandbox's lock, so that a destroy cannot remove the upper directory under the copy.
    /// Throws <see cref="SandboxNotFoundException"/> when the sandbox has no upper directory.
    /// </summary>
    public static async Task<long> SnapshotAsync(string sandboxId, SandboxLayout layout, string destination,
        Func<CancellationToken, Task> pause, Func<CancellationToken, Task> resume, ILogger logger, CancellationToken cancellationToken)
    {
        if (!Directory.Exists(layout.Upper))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await pause(cancellationToken);
        var paused = clock.ElapsedMilliseconds;
        long bytes;
        try
        {
            bytes = await Templates.LayerCopy.CopyAsync(layout.Upper, destination, cancellationToken);
        }
        finally
        {
            // Resumed even when the copy failed or the request was cancelled.
            using var resumeTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await resume(resumeTimeout.Token);
        }
        RemoveAgentLeftovers(destination);
        RuntimeLog.SnapshotTaken(logger, sandboxId, bytes, paused, clock.ElapsedMilliseconds);
        return bytes;
    }

    public static void RemoveAgentLeftovers(string layer)
    {
        var tmp = Path.Combine(layer, "tmp");
        // Only a directory of the layer itself: the sandbox may have made /tmp a link, and an absolute one names a
        // host directory here (another sandbox's /tmp through /proc/PID/root, whose agent sockets these are).
        if (Files.TryStat(tmp, out var status) != 0 || !status.IsDirectory)
        {
            return;
        }
        foreach (var socket in Directory.EnumerateFileSystemEntries(tmp, ".paddock-agent-*.sock"))
        {
            File.Delete(socket);
        }
    }
}
