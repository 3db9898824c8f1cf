using System.Text.RegularExpressions;

namespace Paddock.Daemon.Templates.Images;

/// <summary>
/// An image reference as <c>fromImage</c> takes it: <c>[HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST]</c> (distribution's
/// reference grammar, without Docker Hub's implicit <c>library/</c>: this host pulls from one configured registry,
/// whose names are used as written). A HOST part must be that registry.
/// </summary>
internal sealed partial record ImageReference(string Repository, string Reference)
{
    [GeneratedRegex("^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")]
    private static partial Regex RepositoryPattern();

    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex TagPattern();

    [GeneratedRegex("^sha256:[0-9a-f]{64}$")]
    private static partial Regex DigestPattern();

    /// <summary>Whether <see cref="Reference"/> is a digest, which the manifest must then hash to.</summary>
    public bool IsDigest => Reference.StartsWith("sha256:", StringComparison.Ordinal);

    public static ImageReference Parse(string text, Uri registry)
    {
        var rest = text;
        string? digest = null;
        var at = rest.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            digest = rest[(at + 1)..];
            rest = rest[..at];
            if (!DigestPattern().IsMatch(digest))
            {
                throw ImageImportException.Invalid($"image '{text}': invalid digest '{digest}' (sha256:<64 hex digits> only)");
            }
        }
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        if (slash > 0 && rest[..slash] is var host && (host.Contains('.', StringComparison.Ordinal) || host.Contains(':', StringComparison.Ordinal) || host == "localhost"))
        {
            if (!string.Equals(host, registry.Authority, StringComparison.OrdinalIgnoreCase))
            {
                throw ImageImportException.Invalid($"image '{text}' names registry {host}, but this host pulls only from {registry.Authority} (--image-registry)");
            }
            rest = rest[(slash + 1)..];
        }
        string? tag = null;
        var colon = rest.LastIndexOf(':');
        if (colon > rest.LastIndexOf('/'))
        {
            tag = rest[(colon + 1)..];
            rest = rest[..colon];
            if (!TagPattern().IsMatch(tag))
            {
                throw ImageImportException.Invalid($"image '{text}': invalid tag '{tag}'");
            }
        }
        if (!RepositoryPattern().IsMatch(rest) || rest.Length > 255)
        {
            throw ImageImportException.Invalid($"image '{text}': invalid repository name '{rest}' (lower-case letters, digits, '.', '_', '-' and '/')");
        }
        return new ImageReference(rest, digest ?? tag ?? "latest");
    }

    public override string ToString() => IsDigest ? $"{Repository}@{Reference}" : $"{Repository}:{Reference}";
}
