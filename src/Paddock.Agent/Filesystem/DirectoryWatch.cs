using System.Buffers.Binary;
using System.Text;
using System.Threading.Channels;
using Paddock.Agent.Native;
using Paddock.Envd.Connect;
using Paddock.Envd.Filesystem;

namespace Paddock.Agent.Filesystem;

/// <summary>
/// One watch of a directory (and, when recursive, every directory below it) on its own inotify instance, read by a
/// dedicated thread. Events go into a bounded channel; a consumer that falls <see cref="WatchOptions.Capacity"/>
/// events behind ends the watch with resource_exhausted instead of letting the queue grow. Disposing stops the
/// thread and closes the inotify fd.
/// </summary>
/// <remarks>
/// Event kinds follow fsnotify, the Go library envd uses: IN_CREATE and IN_MOVED_TO are create, IN_MODIFY write,
/// IN_DELETE remove, IN_MOVED_FROM rename (of the old name), IN_ATTRIB chmod. Names are relative to the watched
/// directory ("sub/file.txt" in a recursive watch).
/// </remarks>
internal sealed class DirectoryWatch : IDisposable
{
    private const uint WatchMask = Inotify.Create | Inotify.Modify | Inotify.Attrib | Inotify.Delete | Inotify.MovedFrom
        | Inotify.MovedTo | Inotify.DeleteSelf | Inotify.MoveSelf | Inotify.OnlyDirectory | Inotify.ExcludeUnlinked;

    // Renames are reported as a MOVED_FROM/MOVED_TO pair sharing a cookie; a pair split over two reads stays pending.
    // Bounded so that cookies whose partner never comes (moved out of the tree) cannot accumulate.
    private const int MaxPendingCookies = 1024;

    private readonly string _root;
    private readonly WatchOptions _options;
    private readonly EntryInfos _infos;
    private readonly InotifyHandle _inotify;
    private readonly WakeupHandle _wakeup;
    private readonly Channel<FilesystemEvent> _events;
    private readonly Dictionary<int, string> _directories = []; // watch descriptor -> path relative to the root ("" for it)
    private readonly Dictionary<uint, string> _movedDirectories = []; // cookie -> relative path of a directory moved away
    private readonly Dictionary<uint, bool> _movedUploads = []; // cookie -> whether an upload's temp file replaces its target
    private readonly Thread _thread;
    private int _rootWatch;
    private volatile bool _stopping;
    private int _disposed;

    private DirectoryWatch(string root, WatchOptions options, EntryInfos infos, InotifyHandle inotify, WakeupHandle wakeup)
    {
        _root = root;
        _options = options;
        _infos = infos;
        _inotify = inotify;
        _wakeup = wakeup;
        _events = Channel.CreateBounded<FilesystemEvent>(new BoundedChannelOptions(options.Capacity)
        {
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait, // TryWrite fails when full; the watch then ends (see Publish)
        });
        _thread = new Thread(Run) { IsBackground = true, Name = "paddock watch" };
    }

    /// <summary>The events; completes with a ConnectException when the watch ends on its own (overflow, directory gone).</summary>
    public ChannelReader<FilesystemEvent> Events => _events.Reader;

    /// <summary>Why the watch ended on its own, as soon as it did (the channel reports it only once drained).</summary>
    public ConnectException? Failure { get; private set; }

    /// <summary>The watched directory (clean, absolute, as the caller named it).</summary>
    public string Root => _root;

    /// <summary>
    /// Starts watching <paramref name="root"/>. Throws ConnectException: not_found when it does not exist,
    /// invalid_argument when it is not a directory, resource_exhausted at the inotify limits.
    /// </summary>
    public static DirectoryWatch Start(string root, WatchOptions options, EntryInfos infos)
    {
        const string action = "cannot watch directory";
        var errno = FileStatus.TryGet(root, followSymlinks: true, out var status);
        if (errno != 0)
        {
            throw FsErrors.FromErrno(errno, root, action);
        }
        if (!status.IsDirectory)
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"{action}: '{PathResolver.Printable(root)}' is not a directory");
        }
        if (!options.AllowNetworkMounts && FileSystemKind.TryGetType(root, out _) is { } type && FileSystemKind.NetworkName(type) is { } network)
        {
            throw new ConnectException(ConnectCode.FailedPrecondition, $"{action}: '{PathResolver.Printable(root)}' is on a network filesystem ({network}), where changes made elsewhere are not seen; set allow_network_mounts to watch it anyway");
        }
        InotifyHandle inotify;
        try
        {
            inotify = Inotify.Open();
        }
        catch (NativeFileException ex)
        {
            throw new ConnectException(ConnectCode.ResourceExhausted, $"{action} '{PathResolver.Printable(root)}': no inotify instance available ({NativeFileException.Describe(ex.Errno)}; see fs.inotify.max_user_instances)");
        }
        WakeupHandle? wakeup = null;
        try
        {
            wakeup = Inotify.OpenWakeup();
            var watch = new DirectoryWatch(root, options, infos, inotify, wakeup);
            watch._rootWatch = watch.AddWatch("", action) ?? throw FsErrors.FromErrno(FileErrno.ENOENT, root, action);
            if (options.Recursive)
            {
                watch.AddSubdirectories("", emitCreates: false, throwOnError: true);
            }
            watch._thread.Start();
            return watch;
        }
        catch
        {
            wakeup?.Dispose();
            inotify.Dispose();
            throw;
        }
    }

    /// <summary>Stops the watch: wakes the reader thread, waits for it (bounded), and frees the inotify fd.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stopping = true;
        Inotify.Wake(_wakeup);
        if (_thread.IsAlive && !_thread.Join(TimeSpan.FromSeconds(5)))
        {
            // The thread polls with a 1 s timeout and checks _stopping, so this does not happen; if it did, it still
            // closes the inotify fd itself on its way out, and only the eventfd would be left to the finalizer.
            return;
        }
        _inotify.Dispose();
        _wakeup.Dispose();
        _events.Writer.TryComplete();
    }

    private void Run()
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (!_stopping)
            {
                var ready = Inotify.Wait(_inotify, _wakeup, 1000);
                if (_stopping || ready != 1)
                {
                    continue;
                }
                var n = Inotify.Read(_inotify, buffer);
                if (n == -FileErrno.EAGAIN || n == -FileErrno.EINTR)
                {
                    continue;
                }
                if (n <= 0)
                {
                    Fail(new ConnectException(ConnectCode.Internal, $"reading inotify events of '{_root}' failed: {NativeFileException.Describe(-n)}"));
                    return;
                }
                if (!Process(buffer.AsSpan(0, n)))
                {
                    return;
                }
            }
        }
        catch (Exception ex)
        {
            // A bug in event processing must end this watch with an error, not the agent.
            Fail(new ConnectException(ConnectCode.Internal, $"watch of '{_root}' failed: {ex.Message}"));
        }
        finally
        {
            // The thread owns the inotify fd: closing it here frees it at once also when the watch ended on its own
            // (overflow, directory removed) and the consumer has not disposed yet. Dispose() closes only after Join.
            _inotify.Dispose();
        }
    }

    /// <summary>Handles one read's worth of events; false when the watch has ended.</summary>
    private bool Process(ReadOnlySpan<byte> buffer)
    {
        var offset = 0;
        while (offset + Inotify.EventHeaderSize <= buffer.Length)
        {
            var wd = BinaryPrimitives.ReadInt32LittleEndian(buffer[offset..]);
            var mask = BinaryPrimitives.ReadUInt32LittleEndian(buffer[(offset + 4)..]);
            var cookie = BinaryPrimitives.ReadUInt32LittleEndian(buffer[(offset + 8)..]);
            var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(buffer[(offset + 12)..]);
            var nameBytes = buffer.Slice(offset + Inotify.EventHeaderSize, length);
            var nul = nameBytes.IndexOf((byte)0);
            var name = Encoding.UTF8.GetString(nul < 0 ? nameBytes : nameBytes[..nul]);
            offset += Inotify.EventHeaderSize + length;

            if (!Handle(wd, mask, cookie, name))
            {
                return false;
            }
        }
        if (_movedDirectories.Count > 0)
        {
            // The kernel queues a rename's two halves together, so a directory whose MOVED_TO is not in the same read
            // has almost surely left the tree. Should its half come later after all, it is watched afresh then.
            DropUnmatchedMoves();
        }
        return true;
    }

    private bool Handle(int wd, uint mask, uint cookie, string name)
    {
        if ((mask & Inotify.QueueOverflow) != 0)
        {
            return Fail(new ConnectException(ConnectCode.ResourceExhausted, $"the kernel's inotify queue for '{_root}' overflowed: events were lost (see fs.inotify.max_queued_events)"));
        }
        if (!_directories.TryGetValue(wd, out var directory))
        {
            return true; // a watch removed a moment ago
        }
        if ((mask & Inotify.Ignored) != 0)
        {
            _directories.Remove(wd);
            return wd != _rootWatch || Fail(new ConnectException(ConnectCode.NotFound, $"the watched directory '{_root}' was removed"));
        }
        if ((mask & (Inotify.DeleteSelf | Inotify.MoveSelf | Inotify.Unmount)) != 0)
        {
            // A subdirectory's own removal is reported by its parent's event; the root's is answered below.
            if (wd == _rootWatch && (mask & Inotify.MoveSelf) != 0)
            {
                return Fail(new ConnectException(ConnectCode.NotFound, $"the watched directory '{_root}' was moved away"));
            }
            return true;
        }

        var relative = directory.Length == 0 ? name : directory + "/" + name;
        var isDirectory = (mask & Inotify.IsDirectory) != 0;

        if (UploadTempNames.IsTemp(name))
        {
            if ((mask & Inotify.MovedFrom) != 0)
            {
                Remember(_movedUploads, cookie, UploadTempNames.IsReplacing(name));
            }
            return true; // an upload in progress: its target's events follow at the rename
        }

        if ((mask & Inotify.Create) != 0)
        {
            // A new directory is watched before its create event goes out: a client that reacts to the event by
            // writing into the directory must see that write (E2B's SDK tests do exactly this).
            if (!(isDirectory && _options.Recursive ? AddSubtree(relative) : Publish(relative, EventType.Create)))
            {
                return false;
            }
        }
        if ((mask & Inotify.MovedTo) != 0)
        {
            if (_movedUploads.Remove(cookie, out var replacing))
            {
                // An upload renamed over its target: what envd's in-place write would have shown.
                if (!replacing && !Publish(relative, EventType.Create))
                {
                    return false;
                }
                if (!Publish(relative, EventType.Write))
                {
                    return false;
                }
            }
            else
            {
                if (isDirectory && _options.Recursive && _movedDirectories.Remove(cookie, out var from))
                {
                    Rebase(from, relative); // moved within the tree: its watches stay, under the new name
                    if (!Publish(relative, EventType.Create))
                    {
                        return false;
                    }
                }
                else if (!(isDirectory && _options.Recursive ? AddSubtree(relative) : Publish(relative, EventType.Create)))
                {
                    return false;
                }
            }
        }
        if ((mask & Inotify.Modify) != 0 && !Publish(relative, EventType.Write))
        {
            return false;
        }
        if ((mask & Inotify.Attrib) != 0 && !Publish(relative, EventType.Chmod))
        {
            return false;
        }
        if ((mask & Inotify.Delete) != 0 && !Publish(relative, EventType.Remove))
        {
            return false;
        }
        if ((mask & Inotify.MovedFrom) != 0)
        {
            if (!Publish(relative, EventType.Rename))
            {
                return false;
            }
            if (isDirectory && _options.Recursive)
            {
                _movedDirectories[cookie] = relative;
            }
        }
        return true;
    }

    private bool Publish(string relative, EventType type)
    {
        var ev = new FilesystemEvent { Name = relative, Type = type };
        if (_options.IncludeEntry && type is not (EventType.Remove or EventType.Rename))
        {
            var entry = _infos.TryRead(PathResolver.Join(_root, relative));
            if (entry is not null)
            {
                ev.Entry = entry;
            }
        }
        return _events.Writer.TryWrite(ev)
            || Fail(new ConnectException(ConnectCode.ResourceExhausted, $"the watch of '{_root}' fell more than {_options.Capacity} events behind its reader: events were lost; start a new watch and rescan"));
    }

    private bool Fail(ConnectException error)
    {
        Failure ??= error;
        _events.Writer.TryComplete(error);
        _stopping = true;
        return false;
    }

    /// <summary>Adds a watch for a directory (relative to the root); null when it is gone already.</summary>
    private int? AddWatch(string relative, string action)
    {
        var path = relative.Length == 0 ? _root : PathResolver.Join(_root, relative);
        var errno = Inotify.TryAddWatch(_inotify, path, WatchMask | (relative.Length == 0 ? 0 : Inotify.DontFollow), out var wd);
        if (errno == FileErrno.ENOENT || (errno == FileErrno.ENOTDIR && relative.Length != 0))
        {
            return null;
        }
        if (errno == FileErrno.ENOSPC)
        {
            throw new ConnectException(ConnectCode.ResourceExhausted, $"{action} '{PathResolver.Printable(path)}': the inotify watch limit is reached (fs.inotify.max_user_watches)");
        }
        if (errno != 0)
        {
            throw FsErrors.FromErrno(errno, path, action);
        }
        _directories[wd] = relative;
        return wd;
    }

    /// <summary>
    /// A directory appeared in the tree: watches it, then reports its creation, then what it already holds, in
    /// that order. Watching first means a client that reacts to the create event by writing into the directory sees
    /// its write (E2B's SDK tests do exactly this); the scan reports entries made before the watch existed (mkdir -p,
    /// a quick writer), which would otherwise go unseen, a non-empty file as created and written since its write
    /// event was missed. False when the watch has ended.
    /// </summary>
    private bool AddSubtree(string relative)
    {
        try
        {
            var watched = AddWatch(relative, "cannot watch new directory") is not null;
            if (!Publish(relative, EventType.Create))
            {
                return false;
            }
            return !watched || AddSubdirectories(relative, emitCreates: true, throwOnError: false);
        }
        catch (ConnectException ex)
        {
            return Fail(ex);
        }
    }

    private bool AddSubdirectories(string relative, bool emitCreates, bool throwOnError)
    {
        var directory = relative.Length == 0 ? _root : PathResolver.Join(_root, relative);
        IReadOnlyList<string> names;
        try
        {
            names = FileTree.ListNames(directory, "cannot watch directory");
        }
        catch (ConnectException) when (!throwOnError)
        {
            return true;
        }
        foreach (var name in names)
        {
            if (_stopping)
            {
                return false;
            }
            if (UploadTempNames.IsTemp(name))
            {
                continue;
            }
            var child = relative.Length == 0 ? name : relative + "/" + name;
            var known = FileStatus.TryGet(PathResolver.Join(_root, child), followSymlinks: false, out var status) == 0;
            var watched = known && status.IsDirectory && AddWatch(child, "cannot watch directory") is not null;
            if (emitCreates)
            {
                if (!Publish(child, EventType.Create))
                {
                    return false;
                }
                if (known && status.IsRegular && status.Size > 0 && !Publish(child, EventType.Write))
                {
                    return false;
                }
            }
            if (watched && !AddSubdirectories(child, emitCreates, throwOnError))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>A watched directory moved within the tree: its watches stay valid, their relative paths change.</summary>
    private void Rebase(string from, string to)
    {
        foreach (var (wd, path) in _directories.ToArray())
        {
            if (path == from)
            {
                _directories[wd] = to;
            }
            else if (path.StartsWith(from + "/", StringComparison.Ordinal))
            {
                _directories[wd] = to + path[from.Length..];
            }
        }
    }

    /// <summary>Directories moved out of the tree: their watches would report events under stale names, so drop them.</summary>
    private void DropUnmatchedMoves()
    {
        foreach (var from in _movedDirectories.Values)
        {
            foreach (var (wd, path) in _directories.ToArray())
            {
                if (path == from || path.StartsWith(from + "/", StringComparison.Ordinal))
                {
                    Inotify.RemoveWatch(_inotify, wd);
                    _directories.Remove(wd);
                }
            }
        }
        _movedDirectories.Clear();
    }

    private static void Remember(Dictionary<uint, bool> pending, uint cookie, bool value)
    {
        if (pending.Count >= MaxPendingCookies)
        {
            pending.Clear();
        }
        pending[cookie] = value;
    }
}

/// <summary>How a directory is watched.</summary>
internal sealed record WatchOptions
{
    /// <summary>Also watch every directory below, including ones created later.</summary>
    public bool Recursive { get; init; }

    /// <summary>Attach the entry's <see cref="EntryInfo"/> to events whose path still exists.</summary>
    public bool IncludeEntry { get; init; }

    /// <summary>Watch a directory on a network filesystem (NFS, SMB, FUSE...) too; refused otherwise, as E2B does.
    /// Directories below a recursive watch's root are not checked.</summary>
    public bool AllowNetworkMounts { get; init; }

    /// <summary>How many events may wait for the consumer before the watch ends with resource_exhausted.</summary>
    public int Capacity { get; init; } = 4096;
}
