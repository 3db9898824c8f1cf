using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Win32.SafeHandles;
using Paddock.Agent.Filesystem;
using Paddock.Agent.Native;
using Paddock.Agent.Users;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Files;

/// <summary>
/// One file of an upload: streamed into a temporary file beside its target, then renamed over it. Until
/// <see cref="Commit"/> the target is untouched, so an upload that fails or whose client leaves changes nothing
/// (its temporary file is removed on dispose).
/// </summary>
internal sealed class PendingUpload : IDisposable
{
    private const string Action = "cannot upload";
    private const int StreamCopyBuffer = 256 * 1024;
    private const int MaxSymlinkHops = 40; // the kernel's own limit (MAXSYMLINKS)
    private const UnixFileMode NewFileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;

    private readonly uint? _replacedMode;
    private readonly ILogger _log;
    private FileStream? _file;
    private long _written;
    private List<ReadOnlyMemory<byte>>? _segments;
    private bool _settled; // committed, or its temporary file removed

    private PendingUpload(string target, string finalPath, string tempPath, uint? replacedMode, FileStream file, ILogger log)
    {
        Target = target;
        FinalPath = finalPath;
        TempPath = tempPath;
        _replacedMode = replacedMode;
        _file = file;
        _log = log;
    }

    /// <summary>The path the caller named (clean, absolute): what the answer reports.</summary>
    public string Target { get; }

    /// <summary>Where the bytes go: <see cref="Target"/>, or the file it leads to when it is a symlink (as an
    /// in-place write through the link would).</summary>
    public string FinalPath { get; }

    public string TempPath { get; }

    /// <summary>
    /// Prepares the upload of <paramref name="target"/>: checks it is not a directory, creates its parent
    /// directories (owned by <paramref name="owner"/>), and opens the temporary file.
    /// </summary>
    public static PendingUpload Create(string target, AgentUser owner, ILogger log)
    {
        var finalPath = FollowSymlinks(target);
        var errno = FileStatus.TryGet(finalPath, followSymlinks: false, out var existing);
        uint? replacedMode = null;
        if (errno == 0)
        {
            if (existing.IsDirectory)
            {
                throw new ConnectException(ConnectCode.InvalidArgument, $"{Action}: path '{PathResolver.Printable(target)}' is a directory");
            }
            if (!existing.IsRegular)
            {
                throw new ConnectException(ConnectCode.InvalidArgument, $"{Action}: path '{PathResolver.Printable(target)}' is not a regular file");
            }
            replacedMode = existing.Mode & 0xFFF; // keep the replaced file's permissions (an executable stays one)
        }
        else if (errno != FileErrno.ENOENT)
        {
            throw FsErrors.FromErrno(errno, target, Action);
        }

        var directory = PathResolver.ParentOf(finalPath);
        FileTree.MakeDirectories(directory, owner, Action);
        var tempPath = PathResolver.Join(directory, UploadTempNames.Create(replacing: replacedMode is not null));
        FileStream file;
        try
        {
            file = new FileStream(tempPath, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Share = FileShare.None,
                BufferSize = 0, // the copy loop writes in large chunks already
                UnixCreateMode = NewFileMode,
            });
        }
        catch (Exception ex) when (FsErrors.IsFileError(ex))
        {
            throw FsErrors.From(ex, target, Action);
        }
        var upload = new PendingUpload(target, finalPath, tempPath, replacedMode, file, log);
        try
        {
            if (Identity.GetEffectiveUid() != owner.Uid || Identity.GetEffectiveGid() != owner.Gid)
            {
                FileOwnership.SetOwner(file.SafeFileHandle, target, owner.Uid, owner.Gid);
            }
            if (replacedMode is { } mode)
            {
                // After chown, which clears set-id bits.
                FileOwnership.SetMode(file.SafeFileHandle, target, mode);
            }
        }
        catch (NativeFileException ex)
        {
            upload.Dispose();
            throw FsErrors.FromErrno(ex.Errno, target, Action + $" (giving it to user '{owner.Name}')");
        }
        return upload;
    }

    /// <summary>
    /// Copies <paramref name="source"/> (a decoded request body or one multipart section) into the temporary file.
    /// Errors writing the file become ConnectException (507 when the disk is full); errors reading the source
    /// propagate as they are, for the caller to tell a client that left from a malformed body.
    /// </summary>
    public async Task CopyFromAsync(Stream source, CancellationToken cancellationToken)
    {
        // Taken once: each read of FileStream.SafeFileHandle flushes and seeks.
        var file = (_file ?? throw new InvalidOperationException("the upload is closed")).SafeFileHandle;
        var buffer = ArrayPool<byte>.Shared.Rent(StreamCopyBuffer);
        try
        {
            while (true)
            {
                var read = await source.ReadAsync(buffer, cancellationToken);
                if (read == 0)
                {
                    return;
                }
                Write(file, buffer.AsSpan(0, read));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Copies a plain request body into the temporary file straight from Kestrel's buffers: each read of the body is
    /// written as it lies (one pwritev), with no copy into a buffer of ours. Errors as for the stream overload.
    /// </summary>
    public async Task CopyFromAsync(PipeReader source, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await source.ReadAsync(cancellationToken);
            var data = result.Buffer;
            try
            {
                Write(data);
            }
            finally
            {
                source.AdvanceTo(data.End);
            }
            if (result.IsCompleted)
            {
                return;
            }
            if (result.IsCanceled)
            {
                throw new OperationCanceledException("the upload's body read was cancelled");
            }
        }
    }

    /// <summary>
    /// Appends <paramref name="data"/> to the temporary file as it lies (one pwrite, or one pwritev of its segments).
    /// Errors as for <see cref="CopyFromAsync(Stream, CancellationToken)"/>.
    /// </summary>
    public void Write(ReadOnlySequence<byte> data)
    {
        var file = (_file ?? throw new InvalidOperationException("the upload is closed")).SafeFileHandle;
        if (data.IsSingleSegment)
        {
            Write(file, data.FirstSpan);
            return;
        }
        _segments ??= [];
        _segments.Clear();
        foreach (var segment in data)
        {
            _segments.Add(segment);
        }
        Write(file, _segments, data.Length);
        _segments.Clear();
    }

    // The writes below are synchronous, on the request's own thread: a write into the page cache takes a fraction of
    // a millisecond, and FileStream's asynchronous writes on Linux are the same blocking pwrite on another thread-pool
    // thread, plus a hand-over to it and back per write.
    private void Write(SafeFileHandle file, ReadOnlySpan<byte> data)
    {
        try
        {
            RandomAccess.Write(file, data, _written);
            _written += data.Length;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw FsErrors.From(ex, Target, Action);
        }
    }

    private void Write(SafeFileHandle file, IReadOnlyList<ReadOnlyMemory<byte>> data, long length)
    {
        try
        {
            RandomAccess.Write(file, data, _written);
            _written += length;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw FsErrors.From(ex, Target, Action);
        }
    }

    /// <summary>Sets the metadata attributes and closes the temporary file.</summary>
    public void Finish(IReadOnlyDictionary<string, string> metadata)
    {
        var file = _file ?? throw new InvalidOperationException("the upload is closed");
        try
        {
            foreach (var (key, value) in metadata)
            {
                ExtendedAttributes.Set(file.SafeFileHandle, Target, EntryInfos.MetadataPrefix + key, UploadMetadata.Encode(value));
            }
            file.Dispose();
            _file = null;
        }
        catch (NativeFileException ex) when (ex.Errno == FileErrno.EOPNOTSUPP)
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"{Action}: the filesystem of '{PathResolver.Printable(Target)}' does not support metadata (user extended attributes)");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw FsErrors.From(ex, Target, Action);
        }
    }

    /// <summary>Renames the finished temporary file over the target.</summary>
    public void Commit()
    {
        if (_file is not null)
        {
            throw new InvalidOperationException("the upload is not finished");
        }
        var errno = DirectoryEntries.TryRename(TempPath, FinalPath);
        if (errno != 0)
        {
            throw FsErrors.FromErrno(errno, Target, Action);
        }
        _settled = true;
    }

    /// <summary>Closes the temporary file and, unless committed, removes it.</summary>
    public void Dispose()
    {
        _file?.Dispose();
        _file = null;
        if (_settled)
        {
            return;
        }
        var errno = DirectoryEntries.TryUnlink(TempPath);
        if (errno != 0 && errno != FileErrno.ENOENT)
        {
            FilesLog.TempNotRemoved(_log, TempPath, new NativeFileException("unlink", errno, TempPath));
        }
        _settled = true;
    }

    /// <summary>Where writing through <paramref name="path"/> would land: each final-component symlink followed.</summary>
    private static string FollowSymlinks(string path)
    {
        for (var hop = 0; hop < MaxSymlinkHops; hop++)
        {
            if (FileStatus.TryGet(path, followSymlinks: false, out var status) != 0 || !status.IsSymlink)
            {
                return path;
            }
            var target = DirectoryEntries.TryReadLink(path, out var errno);
            if (target is null)
            {
                throw FsErrors.FromErrno(errno, path, Action);
            }
            path = target.StartsWith('/') ? PathResolver.Clean(target) : PathResolver.Clean(PathResolver.ParentOf(path) + "/" + target);
        }
        throw FsErrors.FromErrno(FileErrno.ELOOP, path, Action);
    }
}
