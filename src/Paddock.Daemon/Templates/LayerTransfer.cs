using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Templates;

/// <summary>A layer received from another node whose files do not match its recorded digest, or not one layer at all.</summary>
internal sealed class LayerDigestException(string message) : IOException(message);

/// <summary>
/// Moves a template's read-only layer between hosts (cluster mode: Cluster/ClusterTemplateReplicas.cs) and checks it.
/// The wire form is a GNU tar of the layer's directory (<see cref="WriteArchiveAsync"/>): tar keeps what a layer is
/// made of (owners in the shifted uid range, modes, hard links, symlinks, the character devices 0/0 that are
/// overlayfs whiteouts, and <c>trusted.overlay.*</c> extended attributes) in one stream, with the program every host
/// already has, where a file-by-file protocol would have to carry each of those itself. The digest is over the
/// files, not the archive (<see cref="Digest"/>), so it does not depend on how tar orders or stamps its headers, and is
/// computed once when the layer is made and recorded in the store.
/// </summary>
internal static class LayerTransfer
{
    /// <summary>Extended attributes that change what an overlay layer means or what its programs may do.</summary>
    private static readonly string[] s_attributes = ["trusted.overlay.opaque", "trusted.overlay.redirect", "trusted.overlay.origin", "security.capability"];

    /// <summary>
    /// <c>sha256:</c> and the SHA-256 of a manifest of <paramref name="directory"/>: every entry (the directory
    /// itself included), in ordinal order of its relative path, with its type, permission bits, numeric owner and
    /// group, the extended attributes above, and for a regular file its size and the SHA-256 of its bytes, for a
    /// symbolic link its target, for a device its device number. Not covered: times (a copy need not keep them to
    /// start the same sandbox) and which files are hard links of each other (their contents are covered each).
    /// </summary>
    public static string Digest(string directory)
    {
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"layer {directory} does not exist");
        }
        using var manifest = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var root = Path.GetFullPath(directory).TrimEnd('/');
        var pending = new Stack<string>();
        pending.Push(root);
        var entries = new List<string>();
        // Bounded by the tree: every directory is pushed once (symbolic links are not followed).
        while (pending.Count > 0)
        {
            var dir = pending.Pop();
            entries.Add(dir);
            var children = Directory.EnumerateFileSystemEntries(dir, "*", new EnumerationOptions { AttributesToSkip = 0, IgnoreInaccessible = false })
                .Order(StringComparer.Ordinal).ToList();
            foreach (var child in children)
            {
                var status = Files.Stat(child);
                if (status.IsDirectory)
                {
                    pending.Push(child);
                }
                else
                {
                    entries.Add(child);
                }
            }
        }
        foreach (var path in entries.Order(StringComparer.Ordinal))
        {
            var status = Files.Stat(path);
            var relative = path.Length == root.Length ? "." : path[(root.Length + 1)..];
            var line = new StringBuilder();
            line.Append(relative).Append('\0')
                .Append(TypeOf(status)).Append('\0')
                .Append(Convert.ToString(status.Mode & 0xFFF, 8)).Append('\0')
                .Append(status.Uid.ToString(CultureInfo.InvariantCulture)).Append('\0')
                .Append(status.Gid.ToString(CultureInfo.InvariantCulture)).Append('\0');
            foreach (var name in s_attributes)
            {
                if (Files.GetAttribute(path, name) is { } value)
                {
                    line.Append(name).Append('=').Append(Convert.ToHexStringLower(value)).Append('\0');
                }
            }
            switch (status.Type)
            {
                case Files.S_IFREG:
                    using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16))
                    {
                        line.Append(status.Size.ToString(CultureInfo.InvariantCulture)).Append('\0').Append(Convert.ToHexStringLower(SHA256.HashData(file)));
                    }
                    break;
                case Files.S_IFLNK:
                    line.Append(new FileInfo(path).LinkTarget);
                    break;
                case S_IFCHR or S_IFBLK:
                    line.Append(status.RdevMajor.ToString(CultureInfo.InvariantCulture)).Append(':').Append(status.RdevMinor.ToString(CultureInfo.InvariantCulture));
                    break;
            }
            line.Append('\n');
            manifest.AppendData(Encoding.UTF8.GetBytes(line.ToString()));
        }
        return "sha256:" + Convert.ToHexStringLower(manifest.GetHashAndReset());
    }

    /// <summary>
    /// Writes the tar of <c>layersDirectory/name</c> (its one top directory named <paramref name="name"/>) to
    /// <paramref name="output"/>.
    /// </summary>
    public static async Task WriteArchiveAsync(string layersDirectory, string name, Stream output, CancellationToken cancellationToken)
    {
        var start = Tar(["-C", layersDirectory, "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cf", "-", "--", name]);
        start.RedirectStandardOutput = true;
        using var tar = Process.Start(start) ?? throw new IOException("could not start tar");
        var errors = tar.StandardError.ReadToEndAsync(cancellationToken);
        try
        {
            await tar.StandardOutput.BaseStream.CopyToAsync(output, 1 << 16, cancellationToken);
            await tar.WaitForExitAsync(cancellationToken);
        }
        catch
        {
            Kill(tar);
            throw;
        }
        if (tar.ExitCode != 0)
        {
            throw new IOException($"tar of layer {name} exited with {tar.ExitCode}: {(await errors).Trim()}");
        }
    }

    /// <summary>
    /// Unpacks the tar <paramref name="archive"/> of layer <paramref name="name"/> into a staging directory of
    /// <paramref name="layersDirectory"/>, checks it against <paramref name="expectedDigest"/>, and only then renames it
    /// to <c>layersDirectory/name</c>: the layer appears whole and verified or not at all, and a staging directory a
    /// crash leaves (named with a leading '.') is removed by the next start (<see cref="TemplateRegistry.LeftoversIn"/>).
    /// Returns the bytes the layer allocates. Throws <see cref="LayerDigestException"/> when the files differ from the
    /// digest or the archive is not one directory named <paramref name="name"/>.
    /// </summary>
    public static async Task<long> InstallAsync(Stream archive, string layersDirectory, string name, string expectedDigest, CancellationToken cancellationToken)
    {
        var target = Path.Combine(layersDirectory, name);
        Directory.CreateDirectory(layersDirectory);
        var staging = Path.Combine(layersDirectory, $".fetch-{name}-{Guid.NewGuid().ToString("N")[..8]}");
        Directory.CreateDirectory(staging);
        try
        {
            var start = Tar(["-C", staging, "--numeric-owner", "--same-owner", "--same-permissions", "--xattrs", "--xattrs-include=*", "-xf", "-"]);
            start.RedirectStandardInput = true;
            using (var tar = Process.Start(start) ?? throw new IOException("could not start tar"))
            {
                var errors = tar.StandardError.ReadToEndAsync(cancellationToken);
                try
                {
                    await archive.CopyToAsync(tar.StandardInput.BaseStream, 1 << 16, cancellationToken);
                    tar.StandardInput.Close();
                    await tar.WaitForExitAsync(cancellationToken);
                }
                catch
                {
                    Kill(tar);
                    throw;
                }
                if (tar.ExitCode != 0)
                {
                    throw new LayerDigestException($"layer {name}: unpacking what was received failed (tar exited with {tar.ExitCode}: {(await errors).Trim()}); nothing was kept");
                }
            }
            var top = Directory.EnumerateFileSystemEntries(staging).Select(Path.GetFileName).ToList();
            if (top.Count != 1 || top[0] != name || !Files.Stat(Path.Combine(staging, name)).IsDirectory)
            {
                throw new LayerDigestException($"layer {name}: what was received is not one directory named {name} (it held: {string.Join(", ", top.Take(5))}); nothing was kept");
            }
            var digest = await Task.Run(() => Digest(Path.Combine(staging, name)), cancellationToken);
            if (!string.Equals(digest, expectedDigest, StringComparison.Ordinal))
            {
                throw new LayerDigestException($"layer {name}: the files received have digest {digest}, not {expectedDigest} as recorded when the layer was made; nothing was kept");
            }
            Directory.Move(Path.Combine(staging, name), target);
            return Files.AllocatedBytesBeneath(target);
        }
        finally
        {
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }
        }
    }

    private const uint S_IFCHR = 0x2000;
    private const uint S_IFBLK = 0x6000;

    private static char TypeOf(Files.Status status) => status.Type switch
    {
        Files.S_IFDIR => 'd',
        Files.S_IFREG => 'f',
        Files.S_IFLNK => 'l',
        S_IFCHR => 'c',
        S_IFBLK => 'b',
        0x1000 => 'p',
        0xC000 => 's',
        _ => '?',
    };

    private static ProcessStartInfo Tar(IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo("tar") { RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        return start;
    }

    private static void Kill(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }
    }
}
