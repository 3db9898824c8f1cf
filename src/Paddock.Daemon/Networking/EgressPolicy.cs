using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Serialization;

namespace Paddock.Daemon.Networking;

/// <summary>
/// What a sandbox may reach, in E2B's terms (spec/openapi.yml, SandboxNetworkConfig): a destination in
/// <see cref="AllowOut"/> is allowed, else one in <see cref="DenyOut"/> is denied, else it is allowed. Names in
/// <see cref="AllowDomains"/> ("example.com", "*.example.com") let HTTP (Host) and TLS (SNI) connections on ports 80
/// and 443 through to a denied address. <c>allow_internet_access: false</c> is <c>denyOut: ["0.0.0.0/0"]</c>.
/// Whatever the policy, a sandbox never reaches the host itself nor another sandbox (see <see cref="SandboxNetworks"/>).
/// </summary>
internal sealed record EgressPolicy
{
    /// <summary>The most entries of each list: every CIDR is one nftables rule, and a policy is applied per sandbox.</summary>
    public const int MaxEntries = 256;

    public static EgressPolicy AllowAll { get; } = new();

    public static EgressPolicy DenyAll { get; } = new() { DenyOut = [IpNetwork.Parse("0.0.0.0/0")] };

    public IReadOnlyList<IpNetwork> AllowOut { get; init; } = [];

    public IReadOnlyList<IpNetwork> DenyOut { get; init; } = [];

    /// <summary>Lower-case host names, exact or "*.suffix".</summary>
    public IReadOnlyList<string> AllowDomains { get; init; } = [];

    /// <summary>No list at all: everything allowed (what a sandbox starts with when nothing is asked).</summary>
    [JsonIgnore]
    public bool AllowsEverything => AllowOut.Count == 0 && DenyOut.Count == 0 && AllowDomains.Count == 0;

    /// <summary>Whether anything is denied at all (so that <c>allowInternetAccess</c> reads false when everything is).</summary>
    [JsonIgnore]
    public bool DeniesEverything => DenyOut.Any(n => n.PrefixLength == 0) && AllowOut.Count == 0 && AllowDomains.Count == 0;

    /// <summary>
    /// Builds a policy from E2B's fields; throws <see cref="FormatException"/> naming the entry that is neither an
    /// IPv4 address, an IPv4 CIDR nor a host name (and for a name in denyOut, which E2B does not support either).
    /// </summary>
    public static EgressPolicy From(bool? allowInternetAccess, IReadOnlyList<string>? allowOut, IReadOnlyList<string>? denyOut)
    {
        var allowNets = new List<IpNetwork>();
        var domains = new List<string>();
        foreach (var entry in allowOut ?? [])
        {
            if (IpNetwork.TryParse(entry, out var net))
            {
                allowNets.Add(net);
            }
            else if (NormalizeDomain(entry) is { } domain)
            {
                domains.Add(domain);
            }
            else
            {
                throw new FormatException($"network.allowOut entry '{entry}' is neither an IPv4 address, an IPv4 CIDR nor a host name");
            }
        }
        var denyNets = new List<IpNetwork>();
        foreach (var entry in denyOut ?? [])
        {
            denyNets.Add(IpNetwork.TryParse(entry, out var net)
                ? net
                : throw new FormatException($"network.denyOut entry '{entry}' is not an IPv4 address or CIDR (host names can only be allowed)"));
        }
        if (allowInternetAccess == false && !denyNets.Any(n => n.PrefixLength == 0))
        {
            denyNets.Add(IpNetwork.Parse("0.0.0.0/0"));
        }
        if (allowNets.Count + domains.Count > MaxEntries || denyNets.Count > MaxEntries)
        {
            throw new FormatException($"network.allowOut and network.denyOut may have at most {MaxEntries} entries each");
        }
        return new EgressPolicy { AllowOut = allowNets.Distinct().ToList(), DenyOut = denyNets.Distinct().ToList(), AllowDomains = domains.Distinct().ToList() };
    }

    /// <summary>Whether a destination not on any list is denied (a <c>denyOut</c> entry covers all of IPv4).</summary>
    [JsonIgnore]
    public bool DeniesByDefault => DenyOut.Any(n => n.PrefixLength == 0);

    /// <summary>
    /// Whether the sandbox's resolver answers for <paramref name="name"/> (lower case, null when not a host name):
    /// every name when the policy allows by default (data in a question could leave by any other way too); else
    /// only names on <see cref="AllowDomains"/>, so that a question about any other name never leaves the host.
    /// </summary>
    public bool ResolvesName(string? name) => !DeniesByDefault || (name is not null && AllowsHost(name));

    /// <summary>The verdict for a new connection to <paramref name="destination"/> before any host name is known.</summary>
    public bool AllowsAddress(IPAddress destination) =>
        AllowOut.Any(n => n.Contains(destination)) || !DenyOut.Any(n => n.Contains(destination));

    /// <summary>Whether <paramref name="host"/> (from a Host header or a TLS SNI) is on the domain allowlist.</summary>
    public bool AllowsHost(string host)
    {
        var name = NormalizeDomain(host);
        if (name is null)
        {
            return false;
        }
        foreach (var d in AllowDomains)
        {
            if (d.StartsWith("*.", StringComparison.Ordinal)
                ? name.EndsWith(d[1..], StringComparison.Ordinal) && name.Length > d.Length - 1
                : name == d)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Lower-case name without a trailing dot, or null when it is not a host name (RFC 1123 labels, optional leading "*.").</summary>
    internal static string? NormalizeDomain(string value)
    {
        var name = value.Trim().TrimEnd('.').ToLowerInvariant();
        var labels = name.StartsWith("*.", StringComparison.Ordinal) ? name[2..] : name;
        if (labels.Length is 0 or > 253 || IPAddress.TryParse(labels, out _))
        {
            return null;
        }
        var parts = labels.Split('.');
        if (parts[^1].All(char.IsAsciiDigit))
        {
            return null; // "300.1.1.1" is a malformed address, not a name: no top-level domain is all digits
        }
        foreach (var label in parts)
        {
            if (label.Length is 0 or > 63 || label[0] == '-' || label[^1] == '-' || !label.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '_'))
            {
                return null;
            }
        }
        return name;
    }
}

/// <summary>An IPv4 network in CIDR form; a bare address is a /32.</summary>
[JsonConverter(typeof(IpNetworkJsonConverter))]
internal readonly record struct IpNetwork(uint Address, int PrefixLength)
{
    public static IpNetwork Parse(string text) => TryParse(text, out var n) ? n : throw new FormatException($"'{text}' is not an IPv4 address or CIDR");

    public static bool TryParse(string text, out IpNetwork network)
    {
        network = default;
        var slash = text.IndexOf('/');
        var addressText = slash < 0 ? text.Trim() : text[..slash].Trim();
        var prefix = 32;
        if (slash >= 0 && !int.TryParse(text[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out prefix))
        {
            return false;
        }
        // IPAddress.TryParse takes "1" as 0.0.0.1: demand the dotted quad.
        if (prefix is < 0 or > 32 || addressText.Count(c => c == '.') != 3
            || !IPAddress.TryParse(addressText, out var address) || address.AddressFamily != AddressFamily.InterNetwork)
        {
            return false;
        }
        network = new IpNetwork(ToUInt32(address) & Mask(prefix), prefix);
        return true;
    }

    public bool Contains(IPAddress address) =>
        address.AddressFamily == AddressFamily.InterNetwork && (ToUInt32(address) & Mask(PrefixLength)) == Address;

    public static uint ToUInt32(IPAddress address)
    {
        Span<byte> b = stackalloc byte[4];
        address.TryWriteBytes(b, out _);
        return (uint)(b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]);
    }

    public static IPAddress ToAddress(uint value) => new([(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value]);

    private static uint Mask(int prefix) => prefix == 0 ? 0 : uint.MaxValue << (32 - prefix);

    /// <summary>Number of addresses in the network.</summary>
    public ulong Size => 1UL << (32 - PrefixLength);

    public override string ToString() => $"{ToAddress(Address)}/{PrefixLength.ToString(CultureInfo.InvariantCulture)}";
}

internal sealed class IpNetworkJsonConverter : JsonConverter<IpNetwork>
{
    public override IpNetwork Read(ref System.Text.Json.Utf8JsonReader reader, Type typeToConvert, System.Text.Json.JsonSerializerOptions options) =>
        IpNetwork.TryParse(reader.GetString() ?? "", out var n) ? n : throw new System.Text.Json.JsonException("not an IPv4 CIDR");

    public override void Write(System.Text.Json.Utf8JsonWriter writer, IpNetwork value, System.Text.Json.JsonSerializerOptions options) =>
        writer.WriteStringValue(value.ToString());
}
