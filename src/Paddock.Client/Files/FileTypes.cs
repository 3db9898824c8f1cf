namespace Paddock.Client;

/// <summary>Per-call options of filesystem operations.</summary>
public sealed record FilesystemOptions
{
    /// <summary>The account the operation acts as (ownership of new files, relative paths); default: the sandbox's default user.</summary>
    public string? User { get; init; }

    /// <summary>The limit for the request; default: the connection's. For streamed reads and writes it covers the start only.</summary>
    public TimeSpan? RequestTimeout { get; init; }
}

/// <summary>How to watch a directory.</summary>
public sealed record WatchOptions
{
    /// <summary>Also watch subdirectories.</summary>
    public bool Recursive { get; init; }

    /// <summary>How long the watch may last; default 60 s as in E2B's SDKs; zero or infinite for no limit.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>The account the watch acts as; default: the sandbox's default user.</summary>
    public string? User { get; init; }

    /// <summary>The limit for starting the watch; default: the connection's.</summary>
    public TimeSpan? RequestTimeout { get; init; }
}

/// <summary>The kind of a filesystem entry.</summary>
public enum FileType
{
    /// <summary>A kind the SDK does not know.</summary>
    Unknown,

    /// <summary>A regular file.</summary>
    File,

    /// <summary>A directory.</summary>
    Directory,

    /// <summary>A symbolic link.</summary>
    Symlink,
}

/// <summary>A file or directory in the sandbox.</summary>
public sealed record EntryInfo
{
    /// <summary>The entry's name (the last path segment).</summary>
    public required string Name { get; init; }

    /// <summary>The entry's kind.</summary>
    public required FileType Type { get; init; }

    /// <summary>The entry's absolute path.</summary>
    public required string Path { get; init; }

    /// <summary>Size in bytes.</summary>
    public long Size { get; init; }

    /// <summary>The mode bits (permissions and type), as <c>stat</c> reports them.</summary>
    public uint Mode { get; init; }

    /// <summary>Permissions as <c>ls -l</c> shows them, e.g. <c>-rw-r--r--</c>.</summary>
    public string Permissions { get; init; } = "";

    /// <summary>The owning user's name.</summary>
    public string Owner { get; init; } = "";

    /// <summary>The owning group's name.</summary>
    public string Group { get; init; } = "";

    /// <summary>Last modification time, when known.</summary>
    public DateTimeOffset? ModifiedTime { get; init; }

    /// <summary>The target, when the entry is a symbolic link.</summary>
    public string? SymlinkTarget { get; init; }

    /// <summary>User-defined metadata stored on the file, when any.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }
}

/// <summary>What a write created or replaced.</summary>
public sealed record WriteInfo
{
    /// <summary>The file's name.</summary>
    public required string Name { get; init; }

    /// <summary>The file's absolute path.</summary>
    public required string Path { get; init; }

    /// <summary>The entry's kind (a file).</summary>
    public FileType Type { get; init; } = FileType.File;
}

/// <summary>What happened to an entry in a watched directory.</summary>
public enum FilesystemEventType
{
    /// <summary>Created.</summary>
    Create,

    /// <summary>Written to.</summary>
    Write,

    /// <summary>Removed.</summary>
    Remove,

    /// <summary>Renamed (reported for the old name).</summary>
    Rename,

    /// <summary>Its permissions or ownership changed.</summary>
    Chmod,
}

/// <summary>One change in a watched directory.</summary>
/// <param name="Name">The entry's path relative to the watched directory.</param>
/// <param name="Type">What happened.</param>
public sealed record FilesystemEvent(string Name, FilesystemEventType Type);
