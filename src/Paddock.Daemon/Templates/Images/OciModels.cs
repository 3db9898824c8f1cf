using System.Text.Json.Serialization;

namespace Paddock.Daemon.Templates.Images;

/// <summary>
/// The media types an import understands (OCI image-spec v1.1 media-types.md, and Docker's image manifest v2 schema 2,
/// which registries and <c>docker save</c> still write).
/// </summary>
internal static class MediaTypes
{
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciConfig = "application/vnd.oci.image.config.v1+json";
    public const string OciLayer = "application/vnd.oci.image.layer.v1.tar";
    public const string OciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    public const string OciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerConfig = "application/vnd.docker.container.image.v1+json";
    public const string DockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    /// <summary>What a registry is asked for: any manifest or index of either family.</summary>
    public static readonly string[] ManifestAccept = [OciIndex, OciManifest, DockerManifestList, DockerManifest];

    public static bool IsIndex(string? mediaType) => mediaType is OciIndex or DockerManifestList;

    public static bool IsManifest(string? mediaType) => mediaType is OciManifest or DockerManifest;

    /// <summary>How a layer of this media type is compressed; null when it is no layer type this host knows.</summary>
    public static LayerCompression? CompressionOf(string mediaType) => mediaType switch
    {
        OciLayer or "application/vnd.oci.image.layer.nondistributable.v1.tar" => LayerCompression.None,
        OciLayerGzip or DockerLayerGzip or "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            or "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => LayerCompression.Gzip,
        OciLayerZstd or "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => LayerCompression.Zstd,
        _ => null,
    };
}

internal enum LayerCompression
{
    None,
    Gzip,
    Zstd,

    /// <summary><c>docker save</c>'s legacy <c>layer.tar</c> has no media type: told by its first bytes.</summary>
    Detect,
}

/// <summary>An OCI content descriptor (image-spec descriptor.md).</summary>
internal sealed record OciDescriptor
{
    [JsonPropertyName("mediaType")] public string? MediaType { get; init; }

    [JsonPropertyName("digest")] public string? Digest { get; init; }

    [JsonPropertyName("size")] public long Size { get; init; }

    [JsonPropertyName("platform")] public OciPlatform? Platform { get; init; }

    [JsonPropertyName("annotations")] public Dictionary<string, string>? Annotations { get; init; }
}

internal sealed record OciPlatform
{
    [JsonPropertyName("architecture")] public string? Architecture { get; init; }

    [JsonPropertyName("os")] public string? Os { get; init; }

    [JsonPropertyName("variant")] public string? Variant { get; init; }
}

/// <summary>An image index (OCI) or manifest list (Docker); also an OCI layout's index.json.</summary>
internal sealed record OciIndex
{
    [JsonPropertyName("schemaVersion")] public int SchemaVersion { get; init; }

    [JsonPropertyName("mediaType")] public string? MediaType { get; init; }

    [JsonPropertyName("manifests")] public List<OciDescriptor>? Manifests { get; init; }
}

/// <summary>An image manifest (OCI, or Docker schema 2: the same fields).</summary>
internal sealed record OciManifest
{
    [JsonPropertyName("schemaVersion")] public int SchemaVersion { get; init; }

    [JsonPropertyName("mediaType")] public string? MediaType { get; init; }

    [JsonPropertyName("config")] public OciDescriptor? Config { get; init; }

    [JsonPropertyName("layers")] public List<OciDescriptor>? Layers { get; init; }

    /// <summary>Present in an index, absent in a manifest: how a document without mediaType is told apart.</summary>
    [JsonPropertyName("manifests")] public List<OciDescriptor>? Manifests { get; init; }
}

/// <summary>The parts of an image configuration (image-spec config.md) an import keeps.</summary>
internal sealed record OciImageConfig
{
    [JsonPropertyName("architecture")] public string? Architecture { get; init; }

    [JsonPropertyName("os")] public string? Os { get; init; }

    [JsonPropertyName("config")] public OciRunConfig? Config { get; init; }

    [JsonPropertyName("rootfs")] public OciRootfs? Rootfs { get; init; }
}

internal sealed record OciRunConfig
{
    [JsonPropertyName("User")] public string? User { get; init; }

    [JsonPropertyName("Env")] public List<string>? Env { get; init; }

    [JsonPropertyName("Entrypoint")] public List<string>? Entrypoint { get; init; }

    [JsonPropertyName("Cmd")] public List<string>? Cmd { get; init; }

    [JsonPropertyName("WorkingDir")] public string? WorkingDir { get; init; }
}

internal sealed record OciRootfs
{
    [JsonPropertyName("type")] public string? Type { get; init; }

    [JsonPropertyName("diff_ids")] public List<string>? DiffIds { get; init; }
}

/// <summary>One image of a <c>docker save</c> archive's manifest.json (the legacy form, also written beside the OCI form since Docker 25).</summary>
internal sealed record DockerSaveEntry
{
    [JsonPropertyName("Config")] public string? Config { get; init; }

    [JsonPropertyName("RepoTags")] public List<string>? RepoTags { get; init; }

    [JsonPropertyName("Layers")] public List<string>? Layers { get; init; }
}

/// <summary>A registry's token endpoint answer (distribution token auth: <c>token</c>, or OAuth's <c>access_token</c>).</summary>
internal sealed record RegistryToken
{
    [JsonPropertyName("token")] public string? Token { get; init; }

    [JsonPropertyName("access_token")] public string? AccessToken { get; init; }
}

[JsonSerializable(typeof(OciIndex))]
[JsonSerializable(typeof(OciManifest))]
[JsonSerializable(typeof(OciImageConfig))]
[JsonSerializable(typeof(List<DockerSaveEntry>))]
[JsonSerializable(typeof(RegistryToken))]
internal sealed partial class OciJson : JsonSerializerContext;
