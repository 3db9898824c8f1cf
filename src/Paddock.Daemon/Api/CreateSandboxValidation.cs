using System.Text.Json;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Api;

/// <summary>
/// Checks a create request and fills in the defaults. Everything the request asks for is either done or refused with a
/// 400 that names it: a field this host cannot honour (volumes, egress rules, MCP...) is never silently ignored.
/// </summary>
internal static class CreateSandboxValidation
{
    public const int MaxMetadataEntries = 64;
    public const int MaxMetadataKeyLength = 256;
    public const int MaxMetadataValueLength = 4096;
    public const int MaxEnvVars = 512;

    public static CreateSandboxCommand Validate(NewSandboxRequest request, DaemonOptions options)
    {
        var template = request.TemplateId?.Trim();
        if (string.IsNullOrEmpty(template))
        {
            throw ApiRequestException.BadRequest("templateID is required");
        }
        if (template.Length > 256)
        {
            throw ApiRequestException.BadRequest("templateID is too long");
        }
        var timeout = ValidateTimeout(request.Timeout, options) ?? options.DefaultTimeoutSeconds;

        Refuse(request.Mcp, "mcp", "MCP gateways are not supported by paddockd");
        Refuse(request.Iam, "iam", "workload identity tokens are not supported by paddockd");
        // As E2B's SDK checks them before it sends (createSandbox in its sandboxApi): autoResume only with autoPause, and
        // never with a filesystem-only pause at the timeout.
        if (request.AutoResume?.Enabled == true && request.AutoPause != true)
        {
            throw ApiRequestException.BadRequest("autoResume.enabled needs autoPause: true (the timeout must pause the sandbox for a request to resume it)");
        }
        if (request.AutoResume?.Enabled == true && request.AutoPauseMemory == false)
        {
            throw ApiRequestException.BadRequest("autoResume.enabled is not valid with autoPauseMemory: false: a filesystem-only pause is resumed by connect only");
        }
        if (request.AutoPauseMemory is not null && request.AutoPause != true)
        {
            throw ApiRequestException.BadRequest("autoPauseMemory is only valid with autoPause: true");
        }
        var network = request.Network;
        if (network is not null)
        {
            Refuse(network.EgressProxy, "network.egressProxy", "egress proxies are not supported by paddockd");
            Refuse(network.Rules, "network.rules", "egress transform rules are not supported by paddockd");
            Refuse(network.MaskRequestHost, "network.maskRequestHost", "host masking is not supported by paddockd");
            Refuse(network.HttpsPorts, "network.httpsPorts", "TLS to sandbox ports is not supported by paddockd");
        }

        return new CreateSandboxCommand
        {
            Template = template,
            TimeoutSeconds = timeout,
            Metadata = ValidateMetadata(request.Metadata),
            VolumeMounts = Volumes.VolumeMountPaths.Parse(request.VolumeMounts),
            EnvVars = ValidateEnvVars(request.EnvVars),
            // Absent means secure: E2B's SDKs sent secure=true by default and newer ones leave the field out.
            Secure = request.Secure ?? true,
            AllowInternetAccess = request.AllowInternetAccess,
            Egress = ValidateEgress(request.AllowInternetAccess, StringList(network?.AllowOut, "network.allowOut"), StringList(network?.DenyOut, "network.denyOut")),
            AllowPublicTraffic = network?.AllowPublicTraffic ?? true,
            AutoPause = request.AutoPause ?? false,
            AutoPauseMemory = request.AutoPauseMemory ?? true,
            AutoResume = request.AutoResume?.Enabled ?? false,
            CpuCount = request.CpuCount is { } cpus
                ? cpus >= 1 && cpus <= Environment.ProcessorCount ? cpus : throw ApiRequestException.BadRequest($"cpuCount must be between 1 and {Environment.ProcessorCount} (this host's CPUs)")
                : options.DefaultCpuCount,
            MemoryMB = request.MemoryMB is { } mem
                ? mem >= 128 && mem <= HostMemoryMB() ? mem : throw ApiRequestException.BadRequest($"memoryMB must be between 128 and {HostMemoryMB()} (this host's memory)")
                : options.DefaultMemoryMB,
            DiskSizeMB = request.DiskSizeMB is { } disk
                ? disk >= 1 ? disk : throw ApiRequestException.BadRequest("diskSizeMB must be at least 1")
                : options.DefaultDiskSizeMB,
            // Whether the tier exists and the team may use it is the lifecycle's to say (IsolationChoice).
            Isolation = request.Isolation is null ? null
                : request.Isolation.Trim() is { Length: > 0 and <= 32 } isolation ? isolation.ToLowerInvariant()
                : throw ApiRequestException.BadRequest("isolation must be a tier name such as runc or gvisor"),
        };
    }

    /// <summary>
    /// E2B's egress fields as a policy (spec/openapi.yml SandboxNetworkConfig): allowOut entries are addresses, CIDRs
    /// or host names and win over denyOut; <c>allow_internet_access: false</c> adds 0.0.0.0/0 to denyOut.
    /// </summary>
    public static Networking.EgressPolicy ValidateEgress(bool? allowInternetAccess, IReadOnlyList<string>? allowOut, IReadOnlyList<string>? denyOut)
    {
        try
        {
            return Networking.EgressPolicy.From(allowInternetAccess, allowOut, denyOut);
        }
        catch (FormatException ex)
        {
            throw ApiRequestException.BadRequest(ex.Message);
        }
    }

    /// <summary>A JSON array of strings (or null/absent) as a list; anything else is a 400 naming the field.</summary>
    private static List<string>? StringList(JsonElement? value, string name)
    {
        if (value is not { } element || element.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (element.ValueKind != JsonValueKind.Array || element.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
        {
            throw ApiRequestException.BadRequest($"{name} must be an array of strings");
        }
        return element.EnumerateArray().Select(e => e.GetString()!).ToList();
    }

    /// <summary>Null when absent; seconds otherwise, within 0..max.</summary>
    public static int? ValidateTimeout(int? timeout, DaemonOptions options)
    {
        if (timeout is not { } seconds)
        {
            return null;
        }
        if (seconds < 0)
        {
            throw ApiRequestException.BadRequest($"timeout must be at least 0 seconds, got {seconds}");
        }
        if (seconds > options.MaxTimeoutSeconds)
        {
            throw ApiRequestException.BadRequest($"timeout cannot be more than {options.MaxTimeoutSeconds} seconds, got {seconds}");
        }
        return seconds;
    }

    private static Dictionary<string, string> ValidateMetadata(Dictionary<string, string?>? metadata)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (metadata is null)
        {
            return result;
        }
        if (metadata.Count > MaxMetadataEntries)
        {
            throw ApiRequestException.BadRequest($"metadata can have at most {MaxMetadataEntries} entries");
        }
        foreach (var (key, value) in metadata)
        {
            if (key.Length is 0 or > MaxMetadataKeyLength)
            {
                throw ApiRequestException.BadRequest($"metadata keys must be 1 to {MaxMetadataKeyLength} characters");
            }
            if (value is null)
            {
                throw ApiRequestException.BadRequest($"metadata '{key}' must be a string, not null");
            }
            if (value.Length > MaxMetadataValueLength)
            {
                throw ApiRequestException.BadRequest($"metadata '{key}' is longer than {MaxMetadataValueLength} characters");
            }
            result[key] = value;
        }
        return result;
    }

    private static Dictionary<string, string> ValidateEnvVars(Dictionary<string, string?>? envVars)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (envVars is null)
        {
            return result;
        }
        if (envVars.Count > MaxEnvVars)
        {
            throw ApiRequestException.BadRequest($"envVars can have at most {MaxEnvVars} entries");
        }
        foreach (var (name, value) in envVars)
        {
            if (name.Length == 0 || name.Contains('=', StringComparison.Ordinal) || name.Contains('\0', StringComparison.Ordinal))
            {
                throw ApiRequestException.BadRequest($"invalid environment variable name '{name}': it must be non-empty and hold no '=' or NUL");
            }
            if (value is null)
            {
                throw ApiRequestException.BadRequest($"environment variable '{name}' must be a string, not null");
            }
            if (value.Contains('\0', StringComparison.Ordinal))
            {
                // The value itself is not echoed: environment values are often secrets.
                throw ApiRequestException.BadRequest($"environment variable '{name}' holds a NUL character");
            }
            result[name] = value;
        }
        return result;
    }

    private static void Refuse(JsonElement? element, string field, string why)
    {
        if (element is not { } e || e.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
        {
            return;
        }
        var empty = e.ValueKind switch
        {
            JsonValueKind.Object => !e.EnumerateObject().Any(),
            JsonValueKind.Array => e.GetArrayLength() == 0,
            JsonValueKind.String => e.GetString()!.Length == 0,
            _ => false,
        };
        if (!empty)
        {
            throw ApiRequestException.BadRequest($"{field}: {why}");
        }
    }

    private static long HostMemoryMB() => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024 * 1024);
}
