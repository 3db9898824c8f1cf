using Paddock.Agent.Native;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Filesystem;

/// <summary>
/// Sorts failed file operations into the Connect codes E2B's SDKs act on (not_found becomes FileNotFoundError,
/// already_exists makes MakeDir answer false), with messages that name the path.
/// </summary>
internal static class FsErrors
{
    public static ConnectException FromErrno(int errno, string path, string action)
    {
        var p = PathResolver.Printable(path);
        return errno switch
        {
            FileErrno.ENOENT => new ConnectException(ConnectCode.NotFound, $"{action}: path '{p}' does not exist"),
            FileErrno.EACCES or FileErrno.EPERM => new ConnectException(ConnectCode.PermissionDenied, $"{action}: permission denied on '{p}'"),
            FileErrno.ENOTDIR => new ConnectException(ConnectCode.InvalidArgument, $"{action}: '{p}' or one of its parents is not a directory"),
            FileErrno.EISDIR => new ConnectException(ConnectCode.InvalidArgument, $"{action}: '{p}' is a directory"),
            FileErrno.EEXIST => new ConnectException(ConnectCode.AlreadyExists, $"{action}: '{p}' already exists"),
            FileErrno.ENOTEMPTY => new ConnectException(ConnectCode.FailedPrecondition, $"{action}: directory '{p}' is not empty"),
            FileErrno.ENAMETOOLONG => new ConnectException(ConnectCode.InvalidArgument, $"{action}: a name in '{p}' is too long"),
            FileErrno.ELOOP => new ConnectException(ConnectCode.InvalidArgument, $"{action}: too many levels of symbolic links in '{p}'"),
            FileErrno.ENOSPC or FileErrno.EDQUOT => new ConnectException(ConnectCode.ResourceExhausted, $"{action}: not enough disk space for '{p}'"),
            FileErrno.EROFS => new ConnectException(ConnectCode.FailedPrecondition, $"{action}: '{p}' is on a read-only filesystem"),
            FileErrno.EXDEV => new ConnectException(ConnectCode.FailedPrecondition, $"{action}: '{p}' is on another filesystem; a move cannot cross filesystems"),
            FileErrno.EBUSY => new ConnectException(ConnectCode.FailedPrecondition, $"{action}: '{p}' is busy (a mount point?)"),
            FileErrno.EINVAL => new ConnectException(ConnectCode.InvalidArgument, $"{action}: invalid operation on '{p}' (moving a directory into itself?)"),
            FileErrno.EMLINK => new ConnectException(ConnectCode.ResourceExhausted, $"{action}: too many links in '{p}'"),
            FileErrno.EOPNOTSUPP => new ConnectException(ConnectCode.FailedPrecondition, $"{action}: the filesystem of '{p}' does not support this"),
            _ => new ConnectException(ConnectCode.Internal, $"{action}: '{p}': {NativeFileException.Describe(errno)}"),
        };
    }

    /// <summary>
    /// Maps an exception from a file operation. .NET's IOExceptions carry the errno in HResult on Unix
    /// (Interop.GetIOException), so the same table applies to them.
    /// </summary>
    public static ConnectException From(Exception ex, string path, string action) => ex switch
    {
        ConnectException c => c,
        NativeFileException n => FromErrno(n.Errno, n.Path, action),
        FileNotFoundException or DirectoryNotFoundException => FromErrno(FileErrno.ENOENT, path, action),
        UnauthorizedAccessException => FromErrno(FileErrno.EACCES, path, action),
        PathTooLongException => FromErrno(FileErrno.ENAMETOOLONG, path, action),
        IOException io when io.HResult > 0 && io.HResult < 4096 => FromErrno(io.HResult, path, action),
        _ => new ConnectException(ConnectCode.Internal, $"{action}: '{PathResolver.Printable(path)}': {ex.Message}"),
    };

    /// <summary>True for the exceptions <see cref="From"/> knows; other exceptions are bugs and propagate.</summary>
    public static bool IsFileError(Exception ex) => ex is IOException or UnauthorizedAccessException or ConnectException;
}
