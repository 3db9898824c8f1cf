using System.Formats.Tar;
using System.IO.Compression;

namespace Paddock.Daemon.Templates.Images;

/// <summary>The files of an image on this host, by their path in an OCI layout or a <c>docker save</c> archive.</summary>
internal interface IImageFiles
{
    /// <summary>The host file holding <paramref name="relativePath"/>, or null when the image has no such file.</summary>
    string? Find(string relativePath);
}

/// <summary>An OCI image layout directory on this host (image-spec image-layout.md).</summary>
internal sealed class DirectoryImageFiles(string root) : IImageFiles
{
    public string? Find(string relativePath)
    {
        var full = Path.GetFullPath(Path.Combine(root, relativePath));
        var rootFull = Path.GetFullPath(root).TrimEnd('/') + "/";
        // The layout is the caller's; its links may point anywhere, so what it names must stay inside it.
        if (!full.StartsWith(rootFull, StringComparison.Ordinal) || !File.Exists(full))
        {
            return null;
        }
        var resolved = new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
        return resolved.StartsWith(rootFull, StringComparison.Ordinal) ? resolved : null;
    }
}

/// <summary>
/// An image archive (a tarred OCI layout, or <c>docker save</c> output in either form; tar, optionally gzip) unpacked
/// into a scratch directory. Member names never become host paths: each regular file is stored under a number and
/// found through a map, so a hostile name cannot place anything; symbolic and hard links inside the archive
/// (Docker 25 links its legacy <c>ID/layer.tar</c> names to <c>blobs/sha256/…</c>) are kept as aliases.
/// </summary>
internal sealed class ArchiveImageFiles : IImageFiles, IDisposable
{
    private readonly Dictionary<string, string> _files = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _aliases = new(StringComparer.Ordinal);

    private ArchiveImageFiles(string scratch)
    {
        Scratch = scratch;
    }

    public string Scratch { get; }

    /// <summary>Reads the archive from <paramref name="body"/>, at most <paramref name="maxBytes"/> of file contents; throws <see cref="ImageImportException"/> for a bad one.</summary>
    public static async Task<ArchiveImageFiles> UnpackAsync(Stream body, string scratch, long maxBytes, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(scratch);
        var files = new ArchiveImageFiles(scratch);
        try
        {
            var peek = new byte[2];
            var got = 0;
            while (got < 2 && await body.ReadAsync(peek.AsMemory(got), cancellationToken) is var n and > 0)
            {
                got += n;
            }
            var joined = new PrefixedStream(peek.AsMemory(0, got), body);
            var gzip = got == 2 && peek[0] == 0x1f && peek[1] == 0x8b;
            await using Stream input = gzip ? new GZipStream(joined, CompressionMode.Decompress) : joined;
            await using var reader = new TarReader(input);
            long total = 0;
            var count = 0;
            while (await reader.GetNextEntryAsync(copyData: false, cancellationToken) is { } entry)
            {
                if (++count > 100_000)
                {
                    throw ImageImportException.Invalid("the archive has more than 100000 members; an image archive has a few per layer");
                }
                var name = Normalize(entry.Name);
                switch (entry.EntryType)
                {
                    case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                        total += entry.Length;
                        if (total > maxBytes)
                        {
                            throw new ImageImportException(StatusCodes.Status413PayloadTooLarge, $"the archive is larger than this host's limit of {maxBytes} bytes; raise --max-image-mb to import it");
                        }
                        var stored = Path.Combine(scratch, "f" + count.ToString(System.Globalization.CultureInfo.InvariantCulture));
                        await using (var output = new FileStream(stored, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
                        {
                            if (entry.DataStream is { } data)
                            {
                                await data.CopyToAsync(output, cancellationToken);
                            }
                        }
                        files._files[name] = stored;
                        files._aliases.Remove(name);
                        break;
                    case TarEntryType.SymbolicLink:
                        var dir = name.Contains('/', StringComparison.Ordinal) ? name[..name.LastIndexOf('/')] + "/" : "";
                        files._aliases[name] = Normalize(entry.LinkName.StartsWith('/') ? entry.LinkName : dir + entry.LinkName);
                        break;
                    case TarEntryType.HardLink:
                        files._aliases[name] = Normalize(entry.LinkName);
                        break;
                    default:
                        // Directories, PAX globals: nothing to keep.
                        break;
                }
            }
            return files;
        }
        catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException or FormatException or ArgumentException)
        {
            files.Dispose();
            throw ImageImportException.Invalid($"the upload is not a valid tar or tar.gz image archive (truncated or corrupt): {ex.Message}", ex);
        }
        catch
        {
            files.Dispose();
            throw;
        }
    }

    public string? Find(string relativePath)
    {
        var name = Normalize(relativePath);
        // Bounded: a chain of links longer than this is a loop.
        for (var hop = 0; hop < 16; hop++)
        {
            if (_files.TryGetValue(name, out var stored))
            {
                return stored;
            }
            if (!_aliases.TryGetValue(name, out var next))
            {
                return null;
            }
            name = next;
        }
        return null;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Scratch, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
            // Gone already.
        }
    }

    /// <summary>
    /// A member name (or link target) as a key: "./", empty parts and a leading "/" dropped, ".." taken lexically
    /// (Docker 25 links ID/layer.tar to ../blobs/sha256/ID); one that leaves the archive's top refused.
    /// </summary>
    private static string Normalize(string name)
    {
        var parts = new List<string>();
        foreach (var part in name.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (part == "..")
            {
                if (parts.Count == 0)
                {
                    throw ImageImportException.Invalid($"archive member '{name}' escapes the archive with '..'");
                }
                parts.RemoveAt(parts.Count - 1);
            }
            else if (part != ".")
            {
                parts.Add(part);
            }
        }
        return string.Join('/', parts);
    }

    /// <summary>The bytes read ahead to tell gzip from tar, then the rest of the body.</summary>
    private sealed class PrefixedStream(ReadOnlyMemory<byte> prefix, Stream rest) : Stream
    {
        private ReadOnlyMemory<byte> _prefix = prefix;

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_prefix.Length > 0)
            {
                var n = Math.Min(buffer.Length, _prefix.Length);
                _prefix[..n].CopyTo(buffer);
                _prefix = _prefix[n..];
                return n;
            }
            return await rest.ReadAsync(buffer, cancellationToken);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_prefix.Length > 0)
            {
                var n = Math.Min(count, _prefix.Length);
                _prefix[..n].CopyTo(buffer.AsMemory(offset, n));
                _prefix = _prefix[n..];
                return n;
            }
            return rest.Read(buffer, offset, count);
        }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
