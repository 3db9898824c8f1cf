using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace Paddock.Daemon.Tests.Templates.Images;

/// <summary>
/// Builds image files in memory, as docker and BuildKit write them: layers (tar, optionally gzip) made with
/// System.Formats.Tar, a config with diff_ids, a manifest, and then an OCI layout directory, a tarred OCI layout
/// (docker save from Docker 25 on), or a legacy docker save archive. Tests change the pieces to make bad images.
/// </summary>
internal sealed class TestImage
{
    public sealed record Layer(byte[] Blob, string DiffId, string MediaType)
    {
        public string Digest => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Blob));
    }

    public List<Layer> Layers { get; } = [];

    public List<string> Env { get; } = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"];

    public string? WorkingDir { get; set; }

    public string? User { get; set; }

    public string Architecture { get; set; } = "amd64";

    /// <summary>Overrides the media type of the manifest's layers (by index) without changing the blob.</summary>
    public Dictionary<int, string> LayerMediaTypeOverrides { get; } = [];

    /// <summary>Replaces a layer's blob in the archive after its descriptor was made (a corrupt download).</summary>
    public Func<int, byte[], byte[]>? TamperBlob { get; set; }

    /// <summary>Adds a layer made by <paramref name="write"/>.</summary>
    public TestImage AddLayer(Action<TarWriter> write, bool gzip = true)
    {
        var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
        {
            write(writer);
        }
        var raw = tar.ToArray();
        var diffId = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(raw));
        if (!gzip)
        {
            Layers.Add(new Layer(raw, diffId, "application/vnd.oci.image.layer.v1.tar"));
            return this;
        }
        var compressed = new MemoryStream();
        using (var z = new GZipStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
        {
            z.Write(raw);
        }
        Layers.Add(new Layer(compressed.ToArray(), diffId, "application/vnd.oci.image.layer.v1.tar+gzip"));
        return this;
    }

    /// <summary>Adds a raw, already made layer blob (e.g. a truncated one).</summary>
    public TestImage AddRawLayer(byte[] blob, string diffId, string mediaType)
    {
        Layers.Add(new Layer(blob, diffId, mediaType));
        return this;
    }

    public byte[] ConfigBytes() => Encoding.UTF8.GetBytes(new JsonObject
    {
        ["architecture"] = Architecture,
        ["os"] = "linux",
        ["config"] = new JsonObject
        {
            ["Env"] = new JsonArray(Env.Select(e => (JsonNode)e!).ToArray()),
            ["WorkingDir"] = WorkingDir ?? "",
            ["User"] = User ?? "",
            ["Entrypoint"] = new JsonArray("/bin/sh", "-c"),
            ["Cmd"] = new JsonArray("echo hi"),
        },
        ["rootfs"] = new JsonObject
        {
            ["type"] = "layers",
            ["diff_ids"] = new JsonArray(Layers.Select(l => (JsonNode)l.DiffId!).ToArray()),
        },
    }.ToJsonString());

    public byte[] ManifestBytes() => Encoding.UTF8.GetBytes(new JsonObject
    {
        ["schemaVersion"] = 2,
        ["mediaType"] = "application/vnd.oci.image.manifest.v1+json",
        ["config"] = Descriptor("application/vnd.oci.image.config.v1+json", ConfigBytes()),
        ["layers"] = new JsonArray(Layers.Select((l, i) => (JsonNode)Descriptor(LayerMediaTypeOverrides.GetValueOrDefault(i, l.MediaType), l.Blob)).ToArray()),
    }.ToJsonString());

    /// <summary>An index whose one linux/amd64 image is this one, beside an arm64 image that does not exist (never fetched).</summary>
    public byte[] IndexBytes()
    {
        var manifest = Descriptor("application/vnd.oci.image.manifest.v1+json", ManifestBytes());
        manifest["platform"] = new JsonObject { ["architecture"] = "amd64", ["os"] = "linux" };
        var other = new JsonObject
        {
            ["mediaType"] = "application/vnd.oci.image.manifest.v1+json",
            ["digest"] = "sha256:" + new string('e', 64),
            ["size"] = 100,
            ["platform"] = new JsonObject { ["architecture"] = "arm64", ["os"] = "linux" },
        };
        return Encoding.UTF8.GetBytes(new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = "application/vnd.oci.image.index.v1+json",
            ["manifests"] = new JsonArray(other, manifest),
        }.ToJsonString());
    }

    /// <summary>Every blob by digest: config, manifest and layers (layers as <see cref="TamperBlob"/> leaves them).</summary>
    public Dictionary<string, byte[]> Blobs()
    {
        var blobs = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        void Add(byte[] b) => blobs["sha256:" + Convert.ToHexStringLower(SHA256.HashData(b))] = b;
        Add(ConfigBytes());
        Add(ManifestBytes());
        for (var i = 0; i < Layers.Count; i++)
        {
            blobs[Layers[i].Digest] = TamperBlob?.Invoke(i, Layers[i].Blob) ?? Layers[i].Blob;
        }
        return blobs;
    }

    /// <summary>The files of an OCI layout: oci-layout, index.json (naming the manifest directly), blobs/sha256/*.</summary>
    public Dictionary<string, byte[]> LayoutFiles()
    {
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal)
        {
            ["oci-layout"] = """{"imageLayoutVersion":"1.0.0"}"""u8.ToArray(),
            ["index.json"] = IndexBytes(),
        };
        foreach (var (digest, bytes) in Blobs())
        {
            files["blobs/sha256/" + digest["sha256:".Length..]] = bytes;
        }
        return files;
    }

    public void WriteLayout(string directory)
    {
        foreach (var (path, bytes) in LayoutFiles())
        {
            var full = Path.Combine(directory, path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllBytes(full, bytes);
        }
    }

    /// <summary>A tarred OCI layout, as docker save writes since Docker 25 (with its legacy manifest.json beside it, as Docker does).</summary>
    public byte[] OciArchive(bool withLegacyManifest = true)
    {
        var files = LayoutFiles();
        if (withLegacyManifest)
        {
            var configHex = Convert.ToHexStringLower(SHA256.HashData(ConfigBytes()));
            files["manifest.json"] = Encoding.UTF8.GetBytes(new JsonArray(new JsonObject
            {
                ["Config"] = "blobs/sha256/" + configHex,
                ["RepoTags"] = new JsonArray("test:1"),
                ["Layers"] = new JsonArray(Layers.Select(l => (JsonNode)("blobs/sha256/" + l.Digest["sha256:".Length..])!).ToArray()),
            }).ToJsonString());
        }
        return Tar(files, []);
    }

    /// <summary>A legacy docker save archive: manifest.json, ID.json, LAYERID/layer.tar (uncompressed), with one layer.tar a symlink as Docker 25 writes them.</summary>
    public byte[] DockerSaveArchive()
    {
        var config = ConfigBytes();
        var configName = Convert.ToHexStringLower(SHA256.HashData(config)) + ".json";
        var files = new Dictionary<string, byte[]> { [configName] = config };
        var links = new Dictionary<string, string>();
        var layerPaths = new JsonArray();
        foreach (var layer in Layers)
        {
            var raw = layer.MediaType.EndsWith("gzip", StringComparison.Ordinal) ? Gunzip(layer.Blob) : layer.Blob;
            var id = layer.DiffId["sha256:".Length..];
            files[$"blobs/sha256/{id}"] = raw;
            links[$"{id}/layer.tar"] = $"../blobs/sha256/{id}";
            layerPaths.Add($"{id}/layer.tar");
        }
        files["manifest.json"] = Encoding.UTF8.GetBytes(new JsonArray(new JsonObject
        {
            ["Config"] = configName,
            ["RepoTags"] = new JsonArray("test:legacy"),
            ["Layers"] = layerPaths,
        }).ToJsonString());
        return Tar(files, links);
    }

    public static byte[] Tar(Dictionary<string, byte[]> files, Dictionary<string, string> links)
    {
        var output = new MemoryStream();
        using (var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var (path, bytes) in files)
            {
                writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, path) { DataStream = new MemoryStream(bytes) });
            }
            foreach (var (path, target) in links)
            {
                writer.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, path) { LinkName = target });
            }
        }
        return output.ToArray();
    }

    private static byte[] Gunzip(byte[] blob)
    {
        using var z = new GZipStream(new MemoryStream(blob), CompressionMode.Decompress);
        var output = new MemoryStream();
        z.CopyTo(output);
        return output.ToArray();
    }

    private static JsonObject Descriptor(string mediaType, byte[] blob) => new()
    {
        ["mediaType"] = mediaType,
        ["digest"] = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(blob)),
        ["size"] = blob.Length,
    };

    // Entry helpers for layer writers.

    public static void FileEntry(TarWriter w, string path, string content, int mode = 0b110_100_100, int uid = 0, int gid = 0) =>
        w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, path)
        {
            DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)),
            Mode = (UnixFileMode)mode,
            Uid = uid,
            Gid = gid,
        });

    public static void DirEntry(TarWriter w, string path, int mode = 0b111_101_101) =>
        w.WriteEntry(new PaxTarEntry(TarEntryType.Directory, path) { Mode = (UnixFileMode)mode });

    public static void LinkEntry(TarWriter w, string path, string target) =>
        w.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, path) { LinkName = target });

    public static void HardLinkEntry(TarWriter w, string path, string target) =>
        w.WriteEntry(new PaxTarEntry(TarEntryType.HardLink, path) { LinkName = target });

    /// <summary>A whiteout (an empty file named .wh.NAME), as image-spec layer.md specifies.</summary>
    public static void WhiteoutEntry(TarWriter w, string path) => FileEntry(w, path, "");
}
