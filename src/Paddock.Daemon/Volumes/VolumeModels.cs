using System.Text.Json.Serialization;

namespace Paddock.Daemon.Volumes;

// The wire shapes of E2B's volume API (spec/openapi.yml: NewVolume, Volume, VolumeAndToken) and of its volume
// content API (the SDK's src/volume/schema.gen.ts: VolumeEntryStat, Error). Names are the spec's.

/// <summary>POST /volumes (E2B's NewVolume, plus paddock's optional size).</summary>
internal sealed class NewVolumeRequest
{
    [JsonPropertyName("name")] public string? Name { get; set; }

    /// <summary>paddock: the volume's size in MiB (default --volume-size-mb).</summary>
    [JsonPropertyName("sizeMB")] public int? SizeMB { get; set; }
}

/// <summary>E2B's Volume (GET /volumes items), plus paddock's size.</summary>
internal sealed record VolumeResponse(
    [property: JsonPropertyName("volumeID")] string VolumeId,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("sizeMB")] long SizeMB);

/// <summary>E2B's VolumeAndToken (create and GET /volumes/{id}), plus paddock's size.</summary>
internal sealed record VolumeAndTokenResponse(
    [property: JsonPropertyName("volumeID")] string VolumeId,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("token")] string Token,
    [property: JsonPropertyName("sizeMB")] long SizeMB);

/// <summary>The content API's VolumeEntryStat: ids as the sandboxes see them.</summary>
internal sealed record VolumeEntryStat(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("path")] string Path,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("mode")] uint Mode,
    [property: JsonPropertyName("uid")] uint Uid,
    [property: JsonPropertyName("gid")] uint Gid,
    [property: JsonPropertyName("atime")] DateTimeOffset Atime,
    [property: JsonPropertyName("mtime")] DateTimeOffset Mtime,
    [property: JsonPropertyName("ctime")] DateTimeOffset Ctime,
    [property: JsonPropertyName("target")] string? Target);

/// <summary>PATCH /volumecontent/{id}/path.</summary>
internal sealed class VolumeMetadataRequest
{
    [JsonPropertyName("uid")] public uint? Uid { get; set; }
    [JsonPropertyName("gid")] public uint? Gid { get; set; }
    [JsonPropertyName("mode")] public uint? Mode { get; set; }
}

/// <summary>The content API's Error: its code is a string (the control plane's is a number).</summary>
internal sealed record VolumeContentError(
    [property: JsonPropertyName("code")] string Code,
    [property: JsonPropertyName("message")] string Message);

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(NewVolumeRequest))]
[JsonSerializable(typeof(List<VolumeResponse>))]
[JsonSerializable(typeof(VolumeAndTokenResponse))]
[JsonSerializable(typeof(VolumeEntryStat))]
[JsonSerializable(typeof(List<VolumeEntryStat>))]
[JsonSerializable(typeof(VolumeMetadataRequest))]
[JsonSerializable(typeof(VolumeContentError))]
internal sealed partial class VolumeJsonContext : JsonSerializerContext;
