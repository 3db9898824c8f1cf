using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Paddock.Daemon.Templates.Images;

/// <summary>What an import applies: the image's config and its layers, bottom first, every blob checked.</summary>
internal sealed record ImagePlan(OciImageConfig Config, IReadOnlyList<ImageLayer> Layers, string Description);

/// <summary>
/// Reads an image's index, manifest and config from its files and checks every blob against its descriptor
/// (size and sha256, image-spec descriptor.md: "the content MUST be verified"): an OCI layout (index.json, blobs/),
/// Docker 25's <c>docker save</c> (the same, with manifest.json beside it), or the legacy <c>docker save</c>
/// (manifest.json naming a config file and <c>layer.tar</c> files, checked against the config's diff_ids).
/// The image picked from an index is the linux/amd64 one: the only platform this host runs.
/// </summary>
internal static partial class ImagePlans
{
    [GeneratedRegex("^sha256:[0-9a-f]{64}$")]
    private static partial Regex Sha256Digest();

    private const int MaxDocumentBytes = 4 << 20;

    public static ImagePlan FromFiles(IImageFiles files)
    {
        if (files.Find("index.json") is { } indexFile)
        {
            var index = ParseJson(File.ReadAllBytes(indexFile), OciJson.Default.OciIndex, "index.json");
            var manifestDescriptor = PickManifest(index, "index.json", d => ReadBlobBytes(files, d), depth: 0);
            var manifest = ParseJson(ReadBlobBytes(files, manifestDescriptor), OciJson.Default.OciManifest, $"manifest {manifestDescriptor.Digest}");
            return FromManifest(manifest, manifestDescriptor.Digest!, d => ReadBlobBytes(files, d), d => VerifiedBlobFile(files, d));
        }
        if (files.Find("manifest.json") is { } legacyFile)
        {
            return FromDockerSave(files, legacyFile);
        }
        throw ImageImportException.Invalid("not an image: neither index.json (an OCI layout, or docker save from Docker 25 on) nor manifest.json (docker save) is at its top");
    }

    /// <summary>
    /// The manifest of the image an index names for linux/amd64 (following nested indexes, as a registry's multi-platform
    /// image may have); <paramref name="readBlob"/> reads a nested index.
    /// </summary>
    public static OciDescriptor PickManifest(OciIndex index, string where, Func<OciDescriptor, byte[]> readBlob, int depth)
    {
        if (depth > 4)
        {
            throw ImageImportException.Invalid($"{where}: indexes nested more than 4 deep");
        }
        var entries = (index.Manifests ?? []).Where(d => d.Digest is not null).ToList();
        // Docker's attestations (SBOMs, provenance) are manifests of platform unknown/unknown: not images to run.
        var images = entries.Where(d => d.Platform is not { Os: "unknown" } && d.Annotations?.GetValueOrDefault("vnd.docker.reference.type") != "attestation-manifest").ToList();
        var matching = images.Where(d => d.Platform is null || (d.Platform.Os == "linux" && d.Platform.Architecture == "amd64")).ToList();
        var chosen = matching.FirstOrDefault(d => d.Platform is not null) ?? (matching.Count == 1 || images.Count == 1 ? matching.FirstOrDefault() : null);
        if (chosen is null)
        {
            var found = string.Join(", ", images.Select(d => d.Platform is { } p ? $"{p.Os}/{p.Architecture}" : d.MediaType ?? "?"));
            throw ImageImportException.Invalid(images.Count == 0
                ? $"{where} names no image"
                : $"{where} has no linux/amd64 image (it has: {found}); this host runs linux/amd64 only");
        }
        if (MediaTypes.IsIndex(chosen.MediaType))
        {
            var nested = ParseJson(readBlob(chosen), OciJson.Default.OciIndex, $"index {chosen.Digest}");
            return PickManifest(nested, $"index {chosen.Digest}", readBlob, depth + 1);
        }
        if (chosen.MediaType is not null && !MediaTypes.IsManifest(chosen.MediaType))
        {
            throw ImageImportException.Invalid($"{where}: unsupported media type '{chosen.MediaType}' for an image manifest (supported: {MediaTypes.OciManifest}, {MediaTypes.DockerManifest})");
        }
        return chosen;
    }

    /// <summary>The plan of an image manifest whose blobs <paramref name="readBlob"/> reads (config) and <paramref name="blobFile"/> finds (layers), both verified.</summary>
    public static ImagePlan FromManifest(OciManifest manifest, string manifestDigest, Func<OciDescriptor, byte[]> readBlob, Func<OciDescriptor, string> blobFile)
    {
        if (manifest.Manifests is not null || MediaTypes.IsIndex(manifest.MediaType))
        {
            throw ImageImportException.Invalid($"manifest {manifestDigest} is an index, where an image manifest was expected");
        }
        if (manifest.MediaType is not null && !MediaTypes.IsManifest(manifest.MediaType))
        {
            throw ImageImportException.Invalid($"manifest {manifestDigest}: unsupported media type '{manifest.MediaType}'");
        }
        var configDescriptor = manifest.Config ?? throw ImageImportException.Invalid($"manifest {manifestDigest} has no config");
        if (configDescriptor.MediaType is not (MediaTypes.OciConfig or MediaTypes.DockerConfig))
        {
            throw ImageImportException.Invalid($"manifest {manifestDigest}: unsupported media type '{configDescriptor.MediaType}' for the config: not a container image");
        }
        var config = ParseJson(readBlob(configDescriptor), OciJson.Default.OciImageConfig, $"config {configDescriptor.Digest}");
        CheckPlatform(config, $"config {configDescriptor.Digest}");
        var descriptors = manifest.Layers ?? [];
        var diffIds = config.Rootfs?.DiffIds ?? [];
        if (diffIds.Count != 0 && diffIds.Count != descriptors.Count)
        {
            throw ImageImportException.Invalid($"manifest {manifestDigest} has {descriptors.Count} layers, its config {diffIds.Count} diff_ids");
        }
        var layers = new List<ImageLayer>();
        for (var i = 0; i < descriptors.Count; i++)
        {
            var d = descriptors[i];
            var compression = MediaTypes.CompressionOf(d.MediaType ?? "")
                ?? throw ImageImportException.Invalid($"layer {d.Digest}: unsupported media type '{d.MediaType}' (supported: tar, tar+gzip)");
            layers.Add(new ImageLayer(blobFile(d), compression, diffIds.Count == 0 ? null : diffIds[i], d.Digest!));
        }
        return new ImagePlan(config, layers, $"manifest {manifestDigest}");
    }

    private static ImagePlan FromDockerSave(IImageFiles files, string manifestFile)
    {
        var entries = ParseJson(File.ReadAllBytes(manifestFile), OciJson.Default.ListDockerSaveEntry, "manifest.json");
        if (entries.Count != 1)
        {
            throw ImageImportException.Invalid($"manifest.json lists {entries.Count} images; import an archive of exactly one (docker save IMAGE)");
        }
        var entry = entries[0];
        var configPath = entry.Config ?? throw ImageImportException.Invalid("manifest.json names no Config");
        var configFile = files.Find(configPath) ?? throw ImageImportException.Invalid($"manifest.json names config {configPath}, which the archive does not have");
        var bytes = ReadBounded(configFile, configPath);
        // The config's name is its digest (ID.json, or blobs/sha256/ID): the one digest legacy archives carry for it.
        var expected = Path.GetFileNameWithoutExtension(configPath);
        if (expected.Length == 64 && expected.All(char.IsAsciiHexDigitLower) && Convert.ToHexStringLower(SHA256.HashData(bytes)) != expected)
        {
            throw ImageImportException.Invalid($"config {configPath}: its sha256 digest does not match its name; the archive is corrupt or was altered");
        }
        var config = ParseJson(bytes, OciJson.Default.OciImageConfig, configPath);
        CheckPlatform(config, configPath);
        var paths = entry.Layers ?? [];
        var diffIds = config.Rootfs?.DiffIds ?? [];
        if (diffIds.Count != paths.Count)
        {
            throw ImageImportException.Invalid($"manifest.json has {paths.Count} layers, the config {diffIds.Count} diff_ids");
        }
        var layers = paths.Select((p, i) => new ImageLayer(
            files.Find(p) ?? throw ImageImportException.Invalid($"manifest.json names layer {p}, which the archive does not have"),
            LayerCompression.Detect, diffIds[i], p)).ToList();
        return new ImagePlan(config, layers, "docker save archive" + (entry.RepoTags is [var tag, ..] ? " of " + tag : ""));
    }

    private static void CheckPlatform(OciImageConfig config, string where)
    {
        if (config.Os is { Length: > 0 } os && os != "linux" || config.Architecture is { Length: > 0 } arch && arch != "amd64")
        {
            throw ImageImportException.Invalid($"{where}: the image is for {config.Os}/{config.Architecture}; this host runs linux/amd64 only");
        }
    }

    /// <summary>The blob's path in an OCI layout, after checking the digest's form.</summary>
    public static string BlobPath(OciDescriptor d)
    {
        if (d.Digest is null || !Sha256Digest().IsMatch(d.Digest))
        {
            throw ImageImportException.Invalid(d.Digest is { } digest && digest.Contains(':', StringComparison.Ordinal) && !digest.StartsWith("sha256:", StringComparison.Ordinal)
                ? $"digest {digest}: unsupported algorithm (sha256 only)"
                : $"invalid digest '{d.Digest}': expected sha256:<64 lower-case hex digits>");
        }
        return "blobs/sha256/" + d.Digest["sha256:".Length..];
    }

    private static string VerifiedBlobFile(IImageFiles files, OciDescriptor d)
    {
        var file = files.Find(BlobPath(d)) ?? throw ImageImportException.Invalid($"blob {d.Digest} ({d.MediaType}) is missing");
        Verify(file, d);
        return file;
    }

    private static byte[] ReadBlobBytes(IImageFiles files, OciDescriptor d)
    {
        var file = files.Find(BlobPath(d)) ?? throw ImageImportException.Invalid($"blob {d.Digest} ({d.MediaType}) is missing");
        var bytes = ReadBounded(file, d.Digest!);
        VerifyBytes(bytes, d);
        return bytes;
    }

    /// <summary>Checks a file against its descriptor: size, then sha256.</summary>
    public static void Verify(string file, OciDescriptor d)
    {
        var length = new FileInfo(file).Length;
        if (length != d.Size)
        {
            throw ImageImportException.Invalid($"blob {d.Digest}: {length} bytes, but its descriptor says {d.Size}");
        }
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var actual = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(stream));
        if (actual != d.Digest)
        {
            throw ImageImportException.Invalid($"blob {d.Digest}: its content has digest {actual}; the image is corrupt or was altered");
        }
    }

    public static void VerifyBytes(byte[] bytes, OciDescriptor d)
    {
        if (bytes.Length != d.Size)
        {
            throw ImageImportException.Invalid($"blob {d.Digest}: {bytes.Length} bytes, but its descriptor says {d.Size}");
        }
        var actual = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));
        if (actual != d.Digest)
        {
            throw ImageImportException.Invalid($"blob {d.Digest}: its content has digest {actual}; the image is corrupt or was altered");
        }
    }

    private static byte[] ReadBounded(string file, string what) =>
        new FileInfo(file).Length <= MaxDocumentBytes
            ? File.ReadAllBytes(file)
            : throw ImageImportException.Invalid($"{what} is larger than {MaxDocumentBytes} bytes; no index, manifest or config is that large");

    public static T ParseJson<T>(byte[] bytes, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, string what)
    {
        try
        {
            return JsonSerializer.Deserialize(bytes, type) ?? throw ImageImportException.Invalid($"{what} is null");
        }
        catch (JsonException ex)
        {
            throw ImageImportException.Invalid($"{what} is not valid JSON: {ex.Message}", ex);
        }
    }
}
