using Paddock.Agent.Native;
using Paddock.Agent.Users;
using Paddock.Envd.Connect;
using Paddock.Envd.Filesystem;

namespace Paddock.Agent.Filesystem;

/// <summary>Operations on directory trees: creating a path's directories, removing a tree, listing one.</summary>
internal static class FileTree
{
    /// <summary>Mode of directories the agent creates; the process umask applies, as to envd's os.MkdirAll(0o755).</summary>
    public const uint DirectoryMode = 0x1ED; // 0o755

    /// <summary>
    /// Creates <paramref name="path"/> and every missing parent, each owned by <paramref name="owner"/>.
    /// Returns false when the directory existed already. Existing parents may be symlinks to directories.
    /// </summary>
    public static bool MakeDirectories(string path, AgentUser owner, string action)
    {
        var created = false;
        var prefix = "";
        foreach (var segment in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            prefix += "/" + segment;
            var errno = FileStatus.TryGet(prefix, followSymlinks: true, out var status);
            if (errno == 0)
            {
                if (!status.IsDirectory)
                {
                    throw new ConnectException(ConnectCode.InvalidArgument, $"{action}: '{PathResolver.Printable(prefix)}' exists and is not a directory");
                }
                continue;
            }
            if (errno != FileErrno.ENOENT)
            {
                throw FsErrors.FromErrno(errno, prefix, action);
            }
            errno = DirectoryEntries.TryMakeDirectory(prefix, DirectoryMode);
            if (errno == FileErrno.EEXIST)
            {
                // Created concurrently (or a dangling symlink): accept it only if it is a directory now.
                if (FileStatus.TryGet(prefix, followSymlinks: true, out status) == 0 && status.IsDirectory)
                {
                    continue;
                }
                throw new ConnectException(ConnectCode.InvalidArgument, $"{action}: '{PathResolver.Printable(prefix)}' exists and is not a directory");
            }
            if (errno != 0)
            {
                throw FsErrors.FromErrno(errno, prefix, action);
            }
            created = true;
            SetOwner(prefix, owner, action);
        }
        return created;
    }

    /// <summary>Gives a new entry to the caller, unless it already is the caller's (the agent runs as that user).</summary>
    public static void SetOwner(string path, AgentUser owner, string action)
    {
        if (FileStatus.TryGet(path, followSymlinks: false, out var status) == 0 && status.Uid == owner.Uid && status.Gid == owner.Gid)
        {
            return;
        }
        try
        {
            FileOwnership.SetOwner(path, owner.Uid, owner.Gid);
        }
        catch (NativeFileException ex)
        {
            throw FsErrors.FromErrno(ex.Errno, path, action + $" (giving it to user '{owner.Name}')");
        }
    }

    /// <summary>
    /// Removes <paramref name="path"/> and, for a directory, everything below it, never following symlinks.
    /// A path that does not exist is not an error (envd's Remove uses Go's os.RemoveAll, which agrees).
    /// </summary>
    public static void Remove(string path, string action, CancellationToken cancellationToken)
    {
        var errno = FileStatus.TryGet(path, followSymlinks: false, out var status);
        if (errno == FileErrno.ENOENT)
        {
            return;
        }
        if (errno != 0)
        {
            throw FsErrors.FromErrno(errno, path, action);
        }
        if (!status.IsDirectory)
        {
            errno = DirectoryEntries.TryUnlink(path);
            if (errno != 0 && errno != FileErrno.ENOENT)
            {
                throw FsErrors.FromErrno(errno, path, action);
            }
            return;
        }
        foreach (var name in ListNames(path, action))
        {
            cancellationToken.ThrowIfCancellationRequested();
            Remove(PathResolver.Join(path, name), action, cancellationToken);
        }
        errno = DirectoryEntries.TryRemoveDirectory(path);
        if (errno != 0 && errno != FileErrno.ENOENT)
        {
            throw FsErrors.FromErrno(errno, path, action);
        }
    }

    /// <summary>
    /// The entries below <paramref name="directory"/> down to <paramref name="depth"/> levels (1: direct children), in
    /// the order of Go's filepath.WalkDir (names sorted bytewise, each directory followed by its contents), which the
    /// SDK's list tests rely on. Symlinked directories are listed but never entered, so links cannot make loops.
    /// Entry paths start with <paramref name="reportedRoot"/>, the path as the caller named it.
    /// </summary>
    public static List<EntryInfo> List(string directory, string reportedRoot, int depth, EntryInfos infos, string action, CancellationToken cancellationToken)
    {
        var entries = new List<EntryInfo>();
        Walk(directory, reportedRoot, 1);
        return entries;

        void Walk(string dir, string reported, int level)
        {
            IReadOnlyList<string> names;
            try
            {
                names = ListNames(dir, action);
            }
            catch (ConnectException) when (level > 1)
            {
                // A subdirectory that vanished or cannot be read is left out rather than failing the whole listing.
                return;
            }
            foreach (var name in names)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var path = PathResolver.Join(dir, name);
                if (FileStatus.TryGet(path, followSymlinks: false, out var status) != 0)
                {
                    continue; // removed since the directory was read
                }
                var entry = infos.Build(path, status);
                entry.Path = PathResolver.Join(reported, name);
                entries.Add(entry);
                if (status.IsDirectory && level < depth)
                {
                    Walk(path, entry.Path, level + 1);
                }
            }
        }
    }

    /// <summary>The names in a directory, sorted bytewise (ordinal on UTF-16 agrees for valid UTF-8 names but for
    /// astral characters, which is close enough for an order no test depends on).</summary>
    public static IReadOnlyList<string> ListNames(string directory, string action)
    {
        try
        {
            var names = new List<string>();
            var options = new EnumerationOptions
            {
                AttributesToSkip = 0, // the default skips "hidden" files, which on Unix means every dotfile
                IgnoreInaccessible = false,
                RecurseSubdirectories = false,
                ReturnSpecialDirectories = false,
            };
            foreach (var entry in Directory.EnumerateFileSystemEntries(directory, "*", options))
            {
                names.Add(PathResolver.NameOf(entry));
            }
            names.Sort(StringComparer.Ordinal);
            return names;
        }
        catch (Exception ex) when (FsErrors.IsFileError(ex))
        {
            throw FsErrors.From(ex, directory, action);
        }
    }
}
