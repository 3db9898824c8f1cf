using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Gvisor;

/// <summary>
/// The mount namespace every <c>runsc</c> of the tier starts in, made once per host (and re-used by a restarted
/// daemon): the host's mounts, except that <c>/proc/sys</c> is a tmpfs holding bind mounts of the real
/// <c>kernel</c>, <c>vm</c> and <c>fs</c> and an empty <c>net</c>.
/// </summary>
/// <remarks>
/// Why: runsc 2024-07-29 refuses <c>--network=sandbox</c> with "cannot run with network enabled in root network
/// namespace" on this kernel (6.18) in every namespace: it takes the existence of
/// <c>/proc/sys/net/core/rmem_default</c> for the sign of the root namespace, and kernel 6.18 has that file in all of
/// them (newer gVisor compares namespace inodes instead). Measured in FACTS.md, re-measured for this tier. Done once
/// here instead of per start, where it cost an unshare, a shell and four mounts per create.
/// So that the sandboxes' mounts, made later by the daemon in the host's namespace, are seen in this one, the tier's
/// <see cref="GvisorOptions.SharedDirectory"/> is a shared mount and this namespace's copy of it a slave (this host's
/// mounts are all private). The namespace file itself lies on a private mount (the state directory bound on itself),
/// because a mount namespace cannot be bound on a mount that propagates into it.
/// </remarks>
internal static class GvisorMountNamespace
{
    private const string NsEnter = "nsenter";

    // Run once inside the new namespace by unshare(1): $1 is a scratch directory for the real /proc/sys.
    private const string Script = """
        set -e
        mount --bind /proc/sys "$1"
        mount -t tmpfs -o size=16k,mode=0755 paddock-procsys /proc/sys
        for d in kernel vm fs; do mkdir /proc/sys/$d; mount --bind "$1/$d" /proc/sys/$d; done
        mkdir /proc/sys/net
        umount "$1"
        """;

    /// <summary>
    /// Makes the state directory a private mount and the shared directory a shared one, unless they are already
    /// (idempotent). Before anything is mounted under them: the runtime's constructor.
    /// </summary>
    public static void PrepareMounts(GvisorOptions options)
    {
        Directory.CreateDirectory(options.StateDirectory);
        BindOnItself(options.StateDirectory, Mounts.MS_PRIVATE);
        Directory.CreateDirectory(options.SharedDirectory);
        BindOnItself(options.SharedDirectory, Mounts.MS_SHARED);
    }

    /// <summary>Makes the namespace unless it exists already (idempotent, also after a crash of the daemon).</summary>
    public static async Task EnsureAsync(GvisorOptions options, CancellationToken cancellationToken)
    {
        PrepareMounts(options);
        if (MountTable.Read().Any(m => m.MountPoint == options.MountNamespaceFile && m.FsType == "nsfs"))
        {
            return;
        }
        using (File.Create(options.MountNamespaceFile))
        {
            // the mount point of the namespace's bind mount
        }
        var scratch = Path.Combine(options.StateDirectory, "procsys");
        Directory.CreateDirectory(scratch);
        var result = await ExternalCommand.RunAsync(
            "unshare",
            [$"--mount={options.MountNamespaceFile}", "--propagation", "slave", "--", "/bin/sh", "-c", Script, "sh", scratch],
            cancellationToken);
        if (!result.Succeeded)
        {
            throw new IOException($"could not make the gVisor tier's mount namespace at {options.MountNamespaceFile}: {result.Describe()}");
        }
    }

    /// <summary>The program and arguments that run <paramref name="arguments"/> inside the namespace.</summary>
    public static IReadOnlyList<string> Enter(GvisorOptions options, IEnumerable<string> arguments) =>
        [NsEnter, $"--mount={options.MountNamespaceFile}", "--", .. arguments];

    /// <summary>
    /// Unmounts the namespace and the tier's two state mounts (for tests and uninstall; sandboxes must be gone).
    /// </summary>
    public static void Remove(GvisorOptions options)
    {
        foreach (var path in (string[])[options.MountNamespaceFile, options.SharedDirectory, options.StateDirectory])
        {
            while (MountTable.Read().Any(m => m.MountPoint == path))
            {
                var errno = Mounts.Unmount(path, Mounts.MNT_DETACH | Mounts.UMOUNT_NOFOLLOW);
                if (errno != 0)
                {
                    throw Errno.Exception("umount", path, errno);
                }
            }
        }
    }

    private static void BindOnItself(string directory, ulong propagation)
    {
        if (!MountTable.IsMountPoint(directory))
        {
            // Recursive: a restarted daemon's mounts under it (sandbox overlays, disks) stay visible through the bind.
            var errno = Mounts.Mount(directory, directory, null, Mounts.MS_BIND | Mounts.MS_REC, null);
            if (errno != 0)
            {
                throw Errno.Exception("mount --bind", directory, errno);
            }
        }
        var set = Mounts.Mount(null, directory, null, propagation, null);
        if (set != 0)
        {
            throw Errno.Exception("mount --make-" + (propagation == Mounts.MS_SHARED ? "shared" : "private"), directory, set);
        }
    }
}
