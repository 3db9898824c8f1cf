using System.Text.Json;
using System.Text.Json.Serialization;
using Paddock.Client;

namespace Paddock.Cli.Output;

/// <summary>JSON for scripts: camelCase, enums as strings, one document per command.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true, UseStringEnumConverter = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SandboxInfo))]
[JsonSerializable(typeof(List<SandboxInfo>))]
[JsonSerializable(typeof(CreatedSandbox))]
[JsonSerializable(typeof(IReadOnlyList<TemplateInfo>))]
[JsonSerializable(typeof(IReadOnlyList<SandboxLogEntry>))]
[JsonSerializable(typeof(IReadOnlyList<ApiKeyInfo>))]
[JsonSerializable(typeof(CreatedApiKey))]
[JsonSerializable(typeof(TeamInfo))]
[JsonSerializable(typeof(TemplateBuildResult))]
[JsonSerializable(typeof(IReadOnlyList<TeamInfo>))]
[JsonSerializable(typeof(SandboxAuditEvent))]
[JsonSerializable(typeof(VolumeInfo))]
[JsonSerializable(typeof(IReadOnlyList<VolumeInfo>))]
internal sealed partial class CliJson : JsonSerializerContext
{
    private static CliJson? _compact;

    /// <summary>One JSON document on one line (for streams such as `paddock audit --json`).</summary>
    public static string WriteLine<T>(T value) =>
        JsonSerializer.Serialize(value, typeof(T), _compact ??= new CliJson(new JsonSerializerOptions(Default.Options) { WriteIndented = false }));

    public static string Write<T>(T value) => JsonSerializer.Serialize(value, typeof(T), Default);
}

/// <summary>What `paddock sandbox create --json` prints.</summary>
internal sealed record CreatedSandbox(string SandboxId, string? TemplateId, string? EnvdVersion);
