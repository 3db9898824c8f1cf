namespace Paddock.Agent.Native;

/// <summary>
/// The errno values the file operations sort into caller-facing errors (Linux asm-generic/errno-base.h and errno.h;
/// the same numbers on x86_64 and arm64).
/// </summary>
internal static class FileErrno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int EXDEV = 18;
    public const int ENOTDIR = 20;
    public const int EISDIR = 21;
    public const int EINVAL = 22;
    public const int EMFILE = 24;
    public const int ENOSPC = 28;
    public const int EROFS = 30;
    public const int EMLINK = 31;
    public const int ERANGE = 34;
    public const int ENAMETOOLONG = 36;
    public const int ENOSYS = 38;
    public const int ENOTEMPTY = 39;
    public const int ELOOP = 40;
    public const int ENODATA = 61;
    public const int EOPNOTSUPP = 95;
    public const int EDQUOT = 122;
}

/// <summary>A failed system call: its errno and the path it acted on, for <see cref="Filesystem.FsErrors"/> to sort.</summary>
internal sealed class NativeFileException : IOException
{
    public NativeFileException(string call, int errno, string path)
        : base($"{call} '{path}' failed: {Describe(errno)}")
    {
        Call = call;
        Errno = errno;
        Path = path;
    }

    public string Call { get; }

    public int Errno { get; }

    public string Path { get; }

    /// <summary>strerror-like text, kept here so messages do not depend on the sandbox's libc locale files.</summary>
    public static string Describe(int errno) => errno switch
    {
        FileErrno.EPERM => "operation not permitted",
        FileErrno.ENOENT => "no such file or directory",
        FileErrno.EIO => "input/output error",
        FileErrno.EACCES => "permission denied",
        FileErrno.EBUSY => "device or resource busy",
        FileErrno.EEXIST => "file exists",
        FileErrno.EXDEV => "cross-device link",
        FileErrno.ENOTDIR => "not a directory",
        FileErrno.EISDIR => "is a directory",
        FileErrno.EINVAL => "invalid argument",
        FileErrno.EMFILE => "too many open files",
        FileErrno.ENOSPC => "no space left on device",
        FileErrno.EROFS => "read-only file system",
        FileErrno.EMLINK => "too many links",
        FileErrno.ERANGE => "result too large",
        FileErrno.ENAMETOOLONG => "file name too long",
        FileErrno.ENOTEMPTY => "directory not empty",
        FileErrno.ELOOP => "too many levels of symbolic links",
        FileErrno.ENODATA => "no data available",
        FileErrno.EOPNOTSUPP => "operation not supported",
        FileErrno.EDQUOT => "disk quota exceeded",
        _ => $"errno {errno}",
    };
}
