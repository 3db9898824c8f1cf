using System.Runtime.InteropServices;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Templates.Images;

/// <summary>link(2), which .NET does not expose: image layers carry hard links (tar type '1'), and a copy instead would cost the space twice.</summary>
internal static partial class HardLinks
{
    /// <summary>Makes <paramref name="newPath"/> a hard link to <paramref name="existingPath"/>; neither is followed if a symlink (linkat without AT_SYMLINK_FOLLOW).</summary>
    public static void Create(string existingPath, string newPath)
    {
        // EEXIST, ENOENT, EXDEV, EMLINK: all mean the layer cannot be applied as written; the caller names the entry.
        if (link(existingPath, newPath) != 0)
        {
            throw Errno.Exception("link", newPath, Marshal.GetLastPInvokeError());
        }
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link(string oldPath, string newPath);
}
