using System.Text;
using Google.Protobuf.WellKnownTypes;
using Paddock.Agent.Native;
using Paddock.Agent.Users;
using Paddock.Envd.Filesystem;

namespace Paddock.Agent.Filesystem;

/// <summary>
/// Builds the <see cref="EntryInfo"/> of a path the way E2B's envd fills it: from lstat (a symlink is reported as
/// itself), <c>mode</c> holding only the permission bits (the SDK tests expect 0o644 and 0o755), <c>permissions</c>
/// in Go's os.FileMode notation (envd is written in Go), owner and group as names, the symlink target fully
/// resolved, and metadata from <c>user.e2b.*</c> extended attributes.
/// </summary>
internal sealed class EntryInfos
{
    /// <summary>The xattr namespace of E2B file metadata; the SDK sees keys without it.</summary>
    public const string MetadataPrefix = "user.e2b.";

    private readonly UserDirectory _users;

    public EntryInfos(UserDirectory users)
    {
        _users = users;
    }

    /// <summary>The entry at <paramref name="path"/> (clean, absolute); throws ConnectException (not_found, ...).</summary>
    public EntryInfo Read(string path, string action)
    {
        var errno = FileStatus.TryGet(path, followSymlinks: false, out var status);
        if (errno != 0)
        {
            throw FsErrors.FromErrno(errno, path, action);
        }
        return Build(path, status);
    }

    /// <summary>The entry at <paramref name="path"/>, or null when it cannot be stat-ed (gone already, say).</summary>
    public EntryInfo? TryRead(string path) =>
        FileStatus.TryGet(path, followSymlinks: false, out var status) == 0 ? Build(path, status) : null;

    public EntryInfo Build(string path, FileStatus status)
    {
        var entry = new EntryInfo
        {
            Name = PathResolver.NameOf(path),
            Type = TypeOf(status),
            Path = path,
            Size = status.Size,
            Mode = status.Mode & 0x1FF,
            Permissions = Permissions(status.Mode),
            Owner = _users.UserName(status.Uid),
            Group = _users.GroupName(status.Gid),
            ModifiedTime = new Timestamp { Seconds = status.ModifiedSeconds, Nanos = (int)status.ModifiedNanoseconds },
        };
        if (status.IsSymlink)
        {
            entry.SymlinkTarget = SymlinkTarget(path);
        }
        else
        {
            // Only regular files and directories can carry user.* attributes (xattr(7)); a symlink's would be refused.
            foreach (var (key, value) in ReadMetadata(path))
            {
                entry.Metadata[key] = value;
            }
        }
        return entry;
    }

    public static FileType TypeOf(FileStatus status) => status.Type switch
    {
        FileStatus.TypeRegular => FileType.File,
        FileStatus.TypeDirectory => FileType.Directory,
        FileStatus.TypeSymlink => FileType.Symlink,
        _ => FileType.Unspecified,
    };

    /// <summary>
    /// Go's os.FileMode.String() of a stat mode: type letters from "dalTLDpSugct?" (or '-' when none), then rwx
    /// triplets. So a setuid binary reads "urwxr-xr-x" and /dev/null "Dcrw-rw-rw-", exactly as envd reports them.
    /// </summary>
    public static string Permissions(uint mode)
    {
        var builder = new StringBuilder(12);
        switch (mode & FileStatus.TypeMask)
        {
            case FileStatus.TypeDirectory: builder.Append('d'); break;
            case FileStatus.TypeSymlink: builder.Append('L'); break;
            case FileStatus.TypeBlockDevice or FileStatus.TypeCharDevice: builder.Append('D'); break;
            case FileStatus.TypeFifo: builder.Append('p'); break;
            case FileStatus.TypeSocket: builder.Append('S'); break;
        }
        if ((mode & 0x800) != 0)
        {
            builder.Append('u'); // S_ISUID
        }
        if ((mode & 0x400) != 0)
        {
            builder.Append('g'); // S_ISGID
        }
        if ((mode & FileStatus.TypeMask) == FileStatus.TypeCharDevice)
        {
            builder.Append('c'); // Go: a char device is ModeDevice | ModeCharDevice
        }
        if ((mode & 0x200) != 0)
        {
            builder.Append('t'); // S_ISVTX
        }
        if (builder.Length == 0)
        {
            builder.Append('-');
        }
        const string rwx = "rwxrwxrwx";
        for (var i = 0; i < 9; i++)
        {
            builder.Append((mode & (1u << (8 - i))) != 0 ? rwx[i] : '-');
        }
        return builder.ToString();
    }

    /// <summary>
    /// Where a symlink leads: the fully resolved absolute path (envd uses Go's filepath.EvalSymlinks, and the SDK's
    /// tests expect an absolute path for a relative link); for a dangling link, its text made absolute.
    /// </summary>
    private static string SymlinkTarget(string path)
    {
        var resolved = DirectoryEntries.TryRealPath(path, out _);
        if (resolved is not null)
        {
            return resolved;
        }
        var text = DirectoryEntries.TryReadLink(path, out _) ?? "";
        return text.StartsWith('/') ? PathResolver.Clean(text) : PathResolver.Clean(PathResolver.ParentOf(path) + "/" + text);
    }

    /// <summary>The <c>user.e2b.*</c> attributes of a path, prefix removed; values are ASCII by E2B's upload rules.</summary>
    public static IEnumerable<KeyValuePair<string, string>> ReadMetadata(string path)
    {
        foreach (var name in ExtendedAttributes.List(path))
        {
            if (!name.StartsWith(MetadataPrefix, StringComparison.Ordinal) || name.Length == MetadataPrefix.Length)
            {
                continue;
            }
            var value = ExtendedAttributes.Get(path, name);
            if (value is not null)
            {
                yield return new(name[MetadataPrefix.Length..], Encoding.UTF8.GetString(value));
            }
        }
    }
}
