using Paddock.Daemon.Native;

namespace Paddock.Daemon.Templates;

/// <summary>
/// Copies an overlay upper directory into a new read-only layer.
/// The copy is GNU <c>cp -a --reflink=auto</c>: it keeps owners (already in the shifted uid range), modes, times,
/// hard links among the copied files, symlinks, device nodes (overlayfs whiteouts are character devices 0/0) and
/// extended attributes, <c>trusted.overlay.opaque</c> included (checked by LayerCopyTests), which a
/// hand-written walk would have to get right one by one. Every file of the copy is a new inode, so a sandbox that
/// keeps writing to its upper directory never changes the layer; on a filesystem with reflinks (XFS, btrfs) the
/// data blocks are shared copy-on-write, on ext4 (this project's hosts) they are copied.
/// </summary>
internal static class LayerCopy
{
    /// <summary>
    /// Copies <paramref name="source"/> to <paramref name="destination"/> (which must not exist; its parent must)
    /// and returns the bytes the copy allocates. On failure nothing is left at <paramref name="destination"/>.
    /// </summary>
    public static async Task<long> CopyAsync(string source, string destination, CancellationToken cancellationToken)
    {
        if (Directory.Exists(destination) || File.Exists(destination))
        {
            throw new IOException($"layer destination {destination} exists already");
        }
        try
        {
            // --no-target-directory: DESTINATION becomes the copy of SOURCE itself (its root directory's owner and mode
            // included), never a directory inside it.
            var result = await ExternalCommand.RunAsync("cp", ["-a", "--reflink=auto", "--no-target-directory", "--", source, destination], cancellationToken);
            if (!result.Succeeded)
            {
                throw new IOException($"copying {source} to {destination} failed: {result.Describe()}");
            }
            return Files.AllocatedBytesBeneath(destination);
        }
        catch
        {
            RemoveQuietly(destination);
            throw;
        }
    }

    private static void RemoveQuietly(string path)
    {
        try
        {
            if (Directory.Exists(path))
            {
                Directory.Delete(path, recursive: true);
            }
        }
        catch (IOException)
        {
            // The caller's error says what went wrong; a half copy in the layers directory is not referenced by anything.
        }
    }
}
