using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Paddock.Daemon.Networking;

/// <summary>
/// One sandbox's veth pair: <see cref="HostInterface"/> on the host with <see cref="HostAddress"/>, "eth0" in the
/// sandbox with <see cref="SandboxAddress"/> and a default route through the host end; and its current policy.
/// Recorded as JSON in the network state directory so that a restarted daemon re-applies it.
/// </summary>
internal sealed record SandboxLink(
    string SandboxId,
    int Slot,
    string HostInterface,
    [property: JsonConverter(typeof(IpAddressJsonConverter))] IPAddress HostAddress,
    [property: JsonConverter(typeof(IpAddressJsonConverter))] IPAddress SandboxAddress,
    EgressPolicy Policy)
{
    /// <summary>The interface name inside the sandbox.</summary>
    public const string SandboxInterface = "eth0";

    public static SandboxLink? TryRead(string path)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), SandboxLinkJson.Default.SandboxLink);
        }
        catch (Exception ex) when (ex is IOException or JsonException)
        {
            return null;
        }
    }

    public void Write(string path)
    {
        // Written whole and renamed, so that a crash never leaves half a record that would hide the slot.
        var temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this, SandboxLinkJson.Default.SandboxLink));
        File.Move(temp, path, overwrite: true);
    }
}

internal sealed class IpAddressJsonConverter : JsonConverter<IPAddress>
{
    public override IPAddress Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        IPAddress.TryParse(reader.GetString() ?? "", out var a) ? a : throw new JsonException("not an IP address");

    public override void Write(Utf8JsonWriter writer, IPAddress value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
}

[JsonSerializable(typeof(SandboxLink))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class SandboxLinkJson : JsonSerializerContext;
