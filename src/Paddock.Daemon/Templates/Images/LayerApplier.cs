using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Templates.Images;

/// <summary>One layer of an image to apply: a verified blob on this host and what is known about its contents.</summary>
/// <param name="File">The blob (compressed as <paramref name="Compression"/> says).</param>
/// <param name="DiffId">The config's <c>rootfs.diff_ids</c> entry: sha256 of the uncompressed tar; null when the config has none.</param>
/// <param name="Label">How messages name it (its digest or its path in the archive).</param>
internal sealed record ImageLayer(string File, LayerCompression Compression, string? DiffId, string Label);

/// <summary>
/// Applies image layers (tar, tar+gzip) to a root filesystem directory, as image-spec layer.md describes: entries
/// in order, a later entry replacing an earlier path; <c>.wh.NAME</c> deletes NAME of the layers below, and
/// <c>.wh..wh..opq</c> empties its directory of what the layers below put there. Whiteouts apply only to lower
/// layers (layer.md: "files that are present in the same layer as a whiteout file can only be hidden by whiteout
/// files in subsequent layers"), so each layer is read twice: once to check it (names, its diff_id) and collect its
/// whiteouts, which are then applied, and once to write its entries.
/// Refused, with the entry named: absolute names, names with "..", entries whose parent on disk is a symbolic link
/// (a link put there by an earlier entry could point anywhere on the host; images written by Docker or BuildKit
/// never place files through one), hard links to anything outside the root, ids beyond the sandboxes' 65536.
/// Device nodes and fifos are skipped with a log line: a sandbox cannot use a device node, and a fifo needs mknod.
/// Owners are set as the image has them (0-65535); the caller shifts them into the sandboxes' range afterwards.
/// </summary>
internal static class LayerApplier
{
    private const string WhiteoutPrefix = ".wh.";
    private const string OpaqueWhiteout = ".wh..wh..opq";
    private const uint MaxId = 65535;

    /// <summary>Checks, then applies <paramref name="layer"/> on top of <paramref name="rootfs"/>. Throws <see cref="ImageImportException"/> for a layer it refuses.</summary>
    public static void Apply(ImageLayer layer, string rootfs, ImportBudget budget, Action<string> log, CancellationToken cancellationToken)
    {
        var whiteouts = Check(layer, budget, cancellationToken);
        foreach (var whiteout in whiteouts)
        {
            ApplyWhiteout(rootfs, whiteout, layer);
        }
        Read(layer, budget, cancellationToken, reader =>
        {
            while (reader.GetNextEntry(copyData: false) is { } entry)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var path = Normalize(entry.Name, layer);
                var name = path.Length == 0 ? "" : path[(path.LastIndexOf('/') + 1)..];
                if (name.StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
                {
                    continue;
                }
                ApplyEntry(rootfs, path, entry, layer, budget, log);
            }
        });
    }

    /// <summary>The first pass: every name valid, the tar complete, its diff_id as the config says; returns the whiteouts.</summary>
    private static List<string> Check(ImageLayer layer, ImportBudget budget, CancellationToken cancellationToken)
    {
        var whiteouts = new List<string>();
        var hash = Read(layer, budget, cancellationToken, reader =>
        {
            while (reader.GetNextEntry(copyData: false) is { } entry)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var path = Normalize(entry.Name, layer);
                if (entry.EntryType == TarEntryType.HardLink)
                {
                    Normalize(entry.LinkName, layer);
                }
                var slash = path.LastIndexOf('/');
                if (path[(slash + 1)..].StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
                {
                    whiteouts.Add(path);
                }
            }
        });
        if (layer.DiffId is { } diffId && !string.Equals(diffId, hash, StringComparison.Ordinal))
        {
            throw ImageImportException.Invalid($"layer {layer.Label}: its uncompressed content has digest {hash}, but the image config says {diffId}; the image is corrupt or was altered");
        }
        return whiteouts;
    }

    /// <summary>Runs <paramref name="body"/> over the layer's tar, then reads the rest of the stream; returns the sha256 digest of the uncompressed tar.</summary>
    private static string Read(ImageLayer layer, ImportBudget budget, CancellationToken cancellationToken, Action<TarReader> body)
    {
        using var file = new FileStream(layer.File, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var compression = layer.Compression == LayerCompression.Detect ? Detect(file) : layer.Compression;
        using Stream decompressed = compression switch
        {
            LayerCompression.None => file,
            LayerCompression.Gzip => new GZipStream(file, CompressionMode.Decompress, leaveOpen: true),
            _ => throw new ImageImportException(StatusCodes.Status400BadRequest,
                $"layer {layer.Label}: unsupported media type (zstd-compressed layers cannot be read on this host; export the image with gzip layers, e.g. docker save or skopeo copy --dest-compress-format gzip)"),
        };
        using var hashing = new HashingReadStream(decompressed, budget.MaxStreamBytes, layer.Label);
        try
        {
            using (var reader = new TarReader(hashing, leaveOpen: true))
            {
                body(reader);
            }
            // The end-of-archive blocks and any padding belong to the diff_id too.
            hashing.CopyTo(Stream.Null);
        }
        catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException or FormatException or ArgumentException)
        {
            throw ImageImportException.Invalid($"layer {layer.Label} is not a valid {(compression == LayerCompression.Gzip ? "gzip-compressed " : "")}tar (truncated or corrupt): {ex.Message}", ex);
        }
        return "sha256:" + hashing.Digest();
    }

    private static LayerCompression Detect(FileStream file)
    {
        Span<byte> magic = stackalloc byte[4];
        var n = file.Read(magic);
        file.Position = 0;
        return n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b ? LayerCompression.Gzip
            : n == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd ? LayerCompression.Zstd
            : LayerCompression.None;
    }

    /// <summary>
    /// A tar member name as a path relative to the root ("" for the root itself): "./" and empty parts dropped;
    /// absolute names, ".." and NUL refused.
    /// </summary>
    internal static string Normalize(string name, ImageLayer layer)
    {
        if (name.Contains('\0', StringComparison.Ordinal))
        {
            throw ImageImportException.Invalid($"layer {layer.Label}: entry name with a NUL byte");
        }
        if (name.StartsWith('/'))
        {
            throw ImageImportException.Invalid($"layer {layer.Label}: entry '{name}' has an absolute path; layer entries must be relative to the root");
        }
        var parts = new List<string>();
        foreach (var part in name.Split('/'))
        {
            if (part is "" or ".")
            {
                continue;
            }
            if (part == "..")
            {
                throw ImageImportException.Invalid($"layer {layer.Label}: entry '{name}' escapes the root with '..'");
            }
            parts.Add(part);
        }
        return string.Join('/', parts);
    }

    /// <summary>
    /// The host path of <paramref name="relative"/>, after checking that no directory on its way is a symbolic link
    /// (or not a directory). With <paramref name="createParents"/>, missing directories are made (root-owned, 0755, as Docker does).
    /// </summary>
    private static string Resolve(string rootfs, string relative, ImageLayer layer, string entryName, bool createParents)
    {
        var current = rootfs;
        var parts = relative.Split('/');
        for (var i = 0; i < parts.Length - 1; i++)
        {
            current = Path.Combine(current, parts[i]);
            var errno = Files.TryStat(current, out var status);
            if (errno == Errno.ENOENT && createParents)
            {
                Directory.CreateDirectory(current);
                continue;
            }
            if (errno == Errno.ENOENT)
            {
                return Path.Combine(rootfs, relative);
            }
            if (errno != 0)
            {
                throw Errno.Exception("statx", current, errno);
            }
            if (status.IsSymlink)
            {
                throw ImageImportException.Invalid($"layer {layer.Label}: entry '{entryName}' goes through the symbolic link /{string.Join('/', parts[..(i + 1)])}; refusing to write through links");
            }
            if (!status.IsDirectory)
            {
                throw ImageImportException.Invalid($"layer {layer.Label}: entry '{entryName}' needs /{string.Join('/', parts[..(i + 1)])} to be a directory, but it is a file");
            }
        }
        return Path.Combine(rootfs, relative);
    }

    private static void ApplyWhiteout(string rootfs, string whiteoutPath, ImageLayer layer)
    {
        var slash = whiteoutPath.LastIndexOf('/');
        var dir = slash < 0 ? "" : whiteoutPath[..slash];
        var name = whiteoutPath[(slash + 1)..];
        if (name == OpaqueWhiteout)
        {
            var hostDir = dir.Length == 0 ? rootfs : Resolve(rootfs, dir, layer, whiteoutPath, createParents: false);
            if (Files.TryStat(hostDir, out var s) == 0 && s.IsDirectory)
            {
                foreach (var child in Directory.EnumerateFileSystemEntries(hostDir).ToList())
                {
                    Remove(child);
                }
            }
            return;
        }
        var target = name[WhiteoutPrefix.Length..];
        if (target.Length == 0 || target.StartsWith(WhiteoutPrefix, StringComparison.Ordinal) || target is "." or "..")
        {
            // AUFS's own bookkeeping (.wh..wh.plnk, .wh..wh.aufs): nothing of the image.
            return;
        }
        var relative = dir.Length == 0 ? target : dir + "/" + target;
        Remove(Resolve(rootfs, relative, layer, whiteoutPath, createParents: false));
    }

    /// <summary>Removes whatever is at <paramref name="path"/> (a directory with its contents), never following a final symbolic link.</summary>
    private static void Remove(string path)
    {
        if (Files.TryStat(path, out var status) != 0)
        {
            return;
        }
        if (status.IsDirectory)
        {
            // Directory.Delete removes links inside as links, without following them.
            Directory.Delete(path, recursive: true);
        }
        else
        {
            File.Delete(path);
        }
    }

    private static void ApplyEntry(string rootfs, string path, TarEntry entry, ImageLayer layer, ImportBudget budget, Action<string> log)
    {
        var isFile = entry.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile;
        budget.Add(isFile ? entry.Length : 0, entry.Name);
        if (entry.Uid is < 0 or > (int)MaxId || entry.Gid is < 0 or > (int)MaxId)
        {
            throw ImageImportException.Invalid($"layer {layer.Label}: entry '{entry.Name}' is owned by {entry.Uid}:{entry.Gid}; sandboxes map ids 0-{MaxId} only");
        }
        if (path.Length == 0)
        {
            if (entry.EntryType == TarEntryType.Directory)
            {
                SetOwnerAndMode(rootfs, entry);
            }
            return;
        }
        var host = Resolve(rootfs, path, layer, entry.Name, createParents: true);
        switch (entry.EntryType)
        {
            case TarEntryType.Directory:
                if (Files.TryStat(host, out var existing) == 0 && !existing.IsDirectory)
                {
                    Remove(host);
                }
                Directory.CreateDirectory(host);
                SetOwnerAndMode(host, entry);
                break;
            case var _ when isFile:
                Remove(host);
                using (var output = new FileStream(host, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
                {
                    entry.DataStream?.CopyTo(output);
                }
                SetOwnerAndMode(host, entry);
                File.SetLastWriteTimeUtc(host, entry.ModificationTime.UtcDateTime);
                break;
            case TarEntryType.SymbolicLink:
                Remove(host);
                // The target is the sandbox's business (an absolute one means the sandbox's root): it is never
                // followed here, since entries through links are refused above.
                File.CreateSymbolicLink(host, entry.LinkName);
                Files.ChangeOwner(host, (uint)entry.Uid, (uint)entry.Gid);
                break;
            case TarEntryType.HardLink:
                var targetPath = Normalize(entry.LinkName, layer);
                var target = targetPath.Length == 0 ? rootfs : Resolve(rootfs, targetPath, layer, entry.Name, createParents: false);
                if (Files.TryStat(target, out var linked) != 0 || linked.IsDirectory)
                {
                    throw ImageImportException.Invalid($"layer {layer.Label}: hard link '{entry.Name}' names '{entry.LinkName}', which is not a file of the image");
                }
                if (target != host)
                {
                    Remove(host);
                    HardLinks.Create(target, host);
                }
                break;
            case TarEntryType.CharacterDevice or TarEntryType.BlockDevice or TarEntryType.Fifo:
                log($"skipped {entry.EntryType} /{path} of layer {layer.Label}: device nodes and fifos are not imported");
                break;
            default:
                // PAX and GNU metadata entries are folded into the entries they describe by TarReader; what is left
                // (sparse files, multi-volume parts) has no place in an image layer.
                throw ImageImportException.Invalid($"layer {layer.Label}: entry '{entry.Name}' has tar type {entry.EntryType}, which images do not use");
        }
    }

    private static void SetOwnerAndMode(string host, TarEntry entry)
    {
        // Owner first: chown(2) clears set-user-ID and set-group-ID, which the mode then puts back.
        Files.ChangeOwner(host, (uint)entry.Uid, (uint)entry.Gid);
        Files.ChangeMode(host, (uint)entry.Mode);
    }

    /// <summary>Hashes what is read through it, and refuses to give more than a bound (a decompression bomb).</summary>
    private sealed class HashingReadStream(Stream inner, long maxBytes, string label) : Stream
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private long _read;

        public string Digest() => Convert.ToHexStringLower(_hash.GetHashAndReset());

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = inner.Read(buffer);
            _read += n;
            if (_read > maxBytes)
            {
                throw new ImageImportException(StatusCodes.Status413PayloadTooLarge, $"layer {label} unpacks to more than {maxBytes} bytes; this host's image size limit is lower");
            }
            _hash.AppendData(buffer[..n]);
            return n;
        }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => _read; set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _hash.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
