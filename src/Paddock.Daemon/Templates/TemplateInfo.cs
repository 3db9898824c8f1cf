using System.Text.Json;
using System.Text.Json.Serialization;

namespace Paddock.Daemon.Templates;

/// <summary>A built template: its read-only root filesystem and what it was built from (template.json beside it).</summary>
internal sealed record TemplateInfo
{
    public required string Name { get; init; }

    /// <summary>The first 16 hex digits of the SHA-256 of the recipe's fingerprint and the id mapping.</summary>
    public required string Version { get; init; }

    /// <summary>The directory sandboxes use as their lower layer. Never written after the build.</summary>
    [JsonIgnore]
    public string RootfsPath { get; init; } = "";

    public string? DefaultUser { get; init; }

    public required DateTimeOffset BuiltAt { get; init; }

    /// <summary>How long the build took, for the record.</summary>
    public double BuildSeconds { get; init; }

    /// <summary>The host uid and gid that root inside maps to; files are owned from there.</summary>
    public uint IdMappingHostBase { get; init; }

    public uint IdMappingSize { get; init; }

    /// <summary>The recipe's fingerprint text, to tell what a version was built from.</summary>
    public string Recipe { get; init; } = "";

    internal static TemplateInfo? TryRead(string metadataFile, string rootfs)
    {
        try
        {
            var info = JsonSerializer.Deserialize(File.ReadAllText(metadataFile), TemplateJson.Default.TemplateInfo);
            return info is null ? null : info with { RootfsPath = rootfs };
        }
        catch (Exception ex) when (ex is IOException or JsonException)
        {
            return null;
        }
    }

    internal void Write(string metadataFile) => File.WriteAllText(metadataFile, JsonSerializer.Serialize(this, TemplateJson.Default.TemplateInfo));
}

[JsonSerializable(typeof(TemplateInfo))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class TemplateJson : JsonSerializerContext;
