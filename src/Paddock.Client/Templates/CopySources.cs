using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace Paddock.Client.Builds;

/// <summary>A COPY source packed for upload: the gzipped tar in a temporary file, and its hash for the server's cache.</summary>
internal sealed class PackedSources : IDisposable
{
    public PackedSources(string hash, string archivePath, int entries)
    {
        Hash = hash;
        ArchivePath = archivePath;
        Entries = entries;
    }

    /// <summary>Lower-case hex SHA-256 of the step and of what it copies (names, kinds, modes, contents), not of times or owners.</summary>
    public string Hash { get; }

    public string ArchivePath { get; }

    public int Entries { get; }

    public void Dispose() => File.Delete(ArchivePath);
}

/// <summary>
/// Packs what a COPY step names from the build context as the daemon's TemplateFiles expects it: a gzipped tar whose
/// names are relative to the context (the daemon unpacks it and matches the step's source again inside it).
/// A source is a relative path or glob (<c>*</c>, <c>?</c>, <c>[...]</c> within one name). Nothing outside the
/// context is read: a source with '..' or an absolute path is refused, and so is one that reaches outside through a
/// symbolic link (its own name or a directory on its way); links found inside a copied directory are stored as links
/// (text the sandbox resolves in its own filesystem), never followed.
/// </summary>
internal static class CopySources
{
    /// <summary>Whether <paramref name="source"/> is not a relative path that stays inside the context.</summary>
    public static bool Escapes(string source) =>
        source.Length == 0 || source.StartsWith('/') || source.Replace('\\', '/').Split('/').Contains("..");

    public static async Task<PackedSources> PackAsync(string context, string source, string destination, CancellationToken cancellationToken)
    {
        var root = Path.GetFullPath(context).TrimEnd('/');
        if (!Directory.Exists(root))
        {
            throw new DirectoryNotFoundException($"the build context {root} is not a directory");
        }
        if (Escapes(source))
        {
            throw new ArgumentException($"COPY source '{source}' is outside the build context {root}: sources are relative paths inside it, without '..'");
        }
        var matches = Match(root, source.TrimEnd('/'));
        if (matches.Count == 0)
        {
            throw new FileNotFoundException($"COPY source '{source}' matches nothing in the build context {root}");
        }

        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Append(hash, $"paddock-copy-v1\0{source}\0{destination}\0");
        var path = Path.Combine(Path.GetTempPath(), $"paddock-copy-{Guid.NewGuid():N}.tar.gz");
        var entries = 0;
        try
        {
            await using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            await using (var gzip = new GZipStream(file, CompressionLevel.Fastest))
            await using (var tar = new TarWriter(gzip, TarEntryFormat.Pax, leaveOpen: true))
            {
                foreach (var match in matches)
                {
                    var real = Resolve(root, match)
                        ?? throw new UnauthorizedAccessException($"COPY source '{match}' leads outside the build context {root} through a symbolic link: refused");
                    entries += await AddAsync(tar, hash, root, real, match, cancellationToken);
                }
            }
            return new PackedSources(Convert.ToHexStringLower(hash.GetHashAndReset()), path, entries);
        }
        catch
        {
            File.Delete(path);
            throw;
        }
    }

    /// <summary>Adds <paramref name="real"/> (a resolved path inside the context) under the name <paramref name="name"/>, and what is below it.</summary>
    private static async Task<int> AddAsync(TarWriter tar, IncrementalHash hash, string root, string real, string name, CancellationToken cancellationToken)
    {
        var count = 0;
        if (Directory.Exists(real))
        {
            await WriteAsync(tar, hash, TarEntryType.Directory, name, real, null, cancellationToken);
            count++;
            foreach (var entry in new DirectoryInfo(real).EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal))
            {
                count += await AddEntryAsync(tar, hash, entry, name + "/" + entry.Name, cancellationToken);
            }
            return count;
        }
        await WriteAsync(tar, hash, TarEntryType.RegularFile, name, real, null, cancellationToken);
        return 1;
    }

    /// <summary>An entry below a copied directory: links stay links.</summary>
    private static async Task<int> AddEntryAsync(TarWriter tar, IncrementalHash hash, FileSystemInfo entry, string name, CancellationToken cancellationToken)
    {
        if (entry.LinkTarget is { } target)
        {
            await WriteAsync(tar, hash, TarEntryType.SymbolicLink, name, entry.FullName, target, cancellationToken);
            return 1;
        }
        if (entry is DirectoryInfo dir)
        {
            var count = 1;
            await WriteAsync(tar, hash, TarEntryType.Directory, name, dir.FullName, null, cancellationToken);
            foreach (var child in dir.EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal))
            {
                count += await AddEntryAsync(tar, hash, child, name + "/" + child.Name, cancellationToken);
            }
            return count;
        }
        // A socket fails to open with an IOException; fifos and devices in a context are not supported (they would be read as files).
        await WriteAsync(tar, hash, TarEntryType.RegularFile, name, entry.FullName, null, cancellationToken);
        return 1;
    }

    private static async Task WriteAsync(TarWriter tar, IncrementalHash hash, TarEntryType type, string name, string path, string? linkTarget, CancellationToken cancellationToken)
    {
        // Windows has no modes to keep: directories 755, files 644 there.
        var mode = type == TarEntryType.SymbolicLink ? (UnixFileMode)0x1FF
            : OperatingSystem.IsWindows() ? (UnixFileMode)(type == TarEntryType.Directory ? 0x1ED : 0x1A4)
            : File.GetUnixFileMode(path);
        var entry = new PaxTarEntry(type, type == TarEntryType.Directory ? name + "/" : name)
        {
            Mode = mode,
            Uid = 0,
            Gid = 0,
            ModificationTime = type == TarEntryType.SymbolicLink ? DateTimeOffset.UnixEpoch : File.GetLastWriteTimeUtc(path),
        };
        Append(hash, $"{type}\0{name}\0{(int)mode}\0{linkTarget}\0");
        if (type == TarEntryType.SymbolicLink)
        {
            entry.LinkName = linkTarget!;
            await tar.WriteEntryAsync(entry, cancellationToken);
            return;
        }
        if (type != TarEntryType.RegularFile)
        {
            await tar.WriteEntryAsync(entry, cancellationToken);
            return;
        }
        await using var data = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
        // Hash the content first, then rewind for the tar: one file open, two reads.
        var buffer = new byte[1 << 16];
        int read;
        long length = 0;
        while ((read = await data.ReadAsync(buffer, cancellationToken)) > 0)
        {
            hash.AppendData(buffer, 0, read);
            length += read;
        }
        Append(hash, $"\0{length}\0");
        data.Position = 0;
        entry.DataStream = data;
        await tar.WriteEntryAsync(entry, cancellationToken);
    }

    private static void Append(IncrementalHash hash, string text) => hash.AppendData(Encoding.UTF8.GetBytes(text));

    /// <summary>The context-relative names <paramref name="source"/> matches, sorted; a name without wildcards matches itself when it exists.</summary>
    internal static List<string> Match(string root, string source)
    {
        var segments = source.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(s => s != ".").ToList();
        var found = new List<string>();
        if (segments.Count == 0)
        {
            found.Add(".");
            return found;
        }
        Walk("", 0);
        found.Sort(StringComparer.Ordinal);
        return found;

        void Walk(string prefix, int index)
        {
            var dir = prefix.Length == 0 ? root : Path.Combine(root, prefix);
            var segment = segments[index];
            IEnumerable<string> names;
            if (segment.IndexOfAny(['*', '?', '[']) < 0)
            {
                var candidate = Path.Combine(dir, segment);
                names = File.Exists(candidate) || Directory.Exists(candidate) || new FileInfo(candidate).LinkTarget is not null ? [segment] : [];
            }
            else
            {
                var pattern = Glob(segment);
                names = Directory.Exists(dir)
                    ? new DirectoryInfo(dir).EnumerateFileSystemInfos().Select(e => e.Name).Where(n => pattern.IsMatch(n)).OrderBy(n => n, StringComparer.Ordinal)
                    : [];
            }
            foreach (var name in names)
            {
                var relative = prefix.Length == 0 ? name : prefix + "/" + name;
                if (index == segments.Count - 1)
                {
                    found.Add(relative);
                }
                else
                {
                    Walk(relative, index + 1);
                }
            }
        }
    }

    private static Regex Glob(string segment)
    {
        var pattern = new StringBuilder("^");
        for (var i = 0; i < segment.Length; i++)
        {
            var c = segment[i];
            switch (c)
            {
                case '*':
                    pattern.Append("[^/]*");
                    break;
                case '?':
                    pattern.Append("[^/]");
                    break;
                case '[':
                    var close = segment.IndexOf(']', i + 1);
                    if (close < 0)
                    {
                        pattern.Append("\\[");
                        break;
                    }
                    var set = segment[(i + 1)..close];
                    pattern.Append('[').Append(set.StartsWith('!') ? "^" + Regex.Escape(set[1..]) : Regex.Escape(set)).Append(']');
                    i = close;
                    break;
                default:
                    pattern.Append(Regex.Escape(c.ToString()));
                    break;
            }
        }
        return new Regex(pattern.Append('$').ToString(), RegexOptions.CultureInvariant);
    }

    /// <summary>
    /// The real path of the context-relative <paramref name="relative"/>, every symbolic link on its way followed
    /// (at most 40, as the kernel's limit), or null when it leads outside <paramref name="root"/>.
    /// </summary>
    internal static string? Resolve(string root, string relative)
    {
        var current = root;
        var pending = new Queue<string>(relative.Split('/', StringSplitOptions.RemoveEmptyEntries));
        var hops = 0;
        while (pending.Count > 0)
        {
            var part = pending.Dequeue();
            if (part == ".")
            {
                continue;
            }
            var next = part == ".." ? Path.GetDirectoryName(current) ?? "/" : Path.Combine(current, part);
            if (!IsInside(root, next))
            {
                return null;
            }
            if (new FileInfo(next).LinkTarget is { } target)
            {
                if (++hops > 40)
                {
                    return null;
                }
                // Resolve the target from where the link is; its parts go before the ones still pending. An absolute
                // target is judged by the path it names: inside the context, it is walked from the context's root.
                var parts = target.Split('/', StringSplitOptions.RemoveEmptyEntries).ToList();
                if (target.StartsWith('/'))
                {
                    var absolute = Path.GetFullPath(target);
                    if (!IsInside(root, absolute))
                    {
                        return null;
                    }
                    current = root;
                    parts = Path.GetRelativePath(root, absolute).Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToList();
                }
                var rest = pending.ToList();
                pending.Clear();
                foreach (var p in parts.Concat(rest))
                {
                    pending.Enqueue(p);
                }
                continue;
            }
            current = next;
        }
        return current;
    }

    private static bool IsInside(string root, string path) =>
        path == root || path.StartsWith(root + "/", StringComparison.Ordinal);
}
