using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Templates;

/// <summary>
/// Moves a root filesystem's owners into the sandboxes' id range (uid and gid N become HostBase + N), once, when a
/// template is built: runc 1.1.5 has no idmapped mounts, so this is how root-owned files inside a sandbox come to be
/// owned by the sandbox's root (Docker's userns-remap does the same to its image layers). See <see cref="IdMapping"/>.
/// </summary>
internal static class OwnershipShift
{
    private const uint SpecialBits = 0xE00; // set-user-ID, set-group-ID, sticky

    // Extended attributes that carry ids or privileges and would not survive the change of owner as they are.
    private const string CapabilityAttribute = "security.capability";
    private static readonly string[] AclAttributes = ["system.posix_acl_access", "system.posix_acl_default"];

    /// <summary>
    /// Shifts every file, directory and link under <paramref name="rootfs"/> (itself included) that is still owned
    /// inside the unshifted range; ids already in the host range are left alone, so running it twice, or meeting a
    /// hard link twice, changes nothing. Does not leave the root's file system (a mount below is not walked).
    /// Returns how many entries it changed.
    /// </summary>
    public static int Shift(string rootfs, IdMapping mapping)
    {
        var root = Files.Stat(rootfs);
        var changed = 0;
        var pending = new Stack<string>();
        changed += ShiftOne(rootfs, root, mapping);
        pending.Push(rootfs);
        while (pending.Count > 0)
        {
            var dir = pending.Pop();
            foreach (var path in Directory.EnumerateFileSystemEntries(dir))
            {
                var status = Files.Stat(path);
                if (status.DevMajor != root.DevMajor || status.DevMinor != root.DevMinor)
                {
                    throw new InvalidOperationException($"{path} is on another file system (a mount left in the template?): refusing to shift through it");
                }
                changed += ShiftOne(path, status, mapping);
                if (status.IsDirectory)
                {
                    pending.Push(path);
                }
            }
        }
        return changed;
    }

    private static int ShiftOne(string path, Files.Status status, IdMapping mapping)
    {
        var uidInside = status.Uid < mapping.Size;
        var gidInside = status.Gid < mapping.Size;
        if (!uidInside && !gidInside)
        {
            return 0;
        }
        if (!status.IsSymlink)
        {
            foreach (var acl in AclAttributes)
            {
                if (Files.GetAttribute(path, acl) is not null)
                {
                    // An ACL names uids and gids of its own; shifting it is not implemented, and leaving it unshifted
                    // would give the wrong users access. debootstrap's output has none.
                    throw new NotSupportedException($"{path} has a POSIX ACL ({acl}); templates with ACLs are not supported");
                }
            }
        }
        var capability = status.IsSymlink ? null : Files.GetAttribute(path, CapabilityAttribute);
        Files.ChangeOwner(path,
            uidInside ? mapping.ToHost(status.Uid) : status.Uid,
            gidInside ? mapping.ToHost(status.Gid) : status.Gid);
        if (!status.IsSymlink && !status.IsDirectory && (status.Mode & SpecialBits) != 0)
        {
            // chown(2) cleared set-user-ID and set-group-ID on this file: put them back (sudo must stay setuid).
            Files.ChangeMode(path, status.Mode);
        }
        if (capability is not null)
        {
            Files.SetAttribute(path, CapabilityAttribute, capability);
        }
        return 1;
    }
}
