using System.Text.Json;

namespace Paddock.Agent.Init;

/// <summary>
/// The body of envd's <c>POST /init</c> (spec/envd/envd.yaml of E2B), as far as this agent applies it. A field that is
/// absent leaves that setting as it is; <see cref="AccessToken"/> present but empty removes the token.
/// </summary>
internal sealed record InitRequest
{
    /// <summary>The largest body accepted: variables and a token, never file contents.</summary>
    public const int MaxBodyBytes = 1024 * 1024;

    public IReadOnlyDictionary<string, string> EnvVars { get; init; } = new Dictionary<string, string>();

    /// <summary>Null: not in the request (keep the token); empty: the agent requires no token from now on.</summary>
    public string? AccessToken { get; init; }

    public string? DefaultUser { get; init; }

    public string? DefaultWorkdir { get; init; }

    /// <summary>
    /// Parses the body. Throws <see cref="InitRequestException"/> for malformed JSON, wrong types, variable names a
    /// process cannot have (empty, with '=' or NUL), and the fields this agent cannot honour (volume mounts and a CA
    /// bundle): accepting them silently would leave the caller believing they took effect. <c>timestamp</c>,
    /// <c>hyperloopIP</c> and <c>lifecycleID</c> are accepted and ignored: the sandbox shares the host's clock
    /// (a runc container has no clock of its own to set, and no CAP_SYS_TIME), and the other two name E2B services.
    /// </summary>
    public static InitRequest Parse(ReadOnlySpan<byte> json)
    {
        if (json.IsEmpty)
        {
            return new InitRequest();
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json.ToArray());
        }
        catch (JsonException ex)
        {
            throw new InitRequestException($"the body is not valid JSON: {ex.Message}");
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new InitRequestException("the body must be a JSON object");
            }
            var request = new InitRequest();
            foreach (var property in root.EnumerateObject())
            {
                var value = property.Value;
                request = property.Name switch
                {
                    "envVars" => request with { EnvVars = ParseEnvVars(value) },
                    "accessToken" => request with { AccessToken = OptionalString(property) ?? "" },
                    "defaultUser" => request with { DefaultUser = OptionalString(property) },
                    "defaultWorkdir" => request with { DefaultWorkdir = OptionalString(property) },
                    "volumeMounts" when value.ValueKind == JsonValueKind.Array && value.GetArrayLength() > 0 =>
                        throw new InitRequestException("volumeMounts are not supported by this agent"),
                    "caBundle" when value.ValueKind == JsonValueKind.String && value.GetString()!.Length > 0 =>
                        throw new InitRequestException("caBundle is not supported by this agent"),
                    _ => request,
                };
            }
            return request;
        }
    }

    private static Dictionary<string, string> ParseEnvVars(JsonElement value)
    {
        var vars = new Dictionary<string, string>(StringComparer.Ordinal);
        if (value.ValueKind == JsonValueKind.Null)
        {
            return vars;
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new InitRequestException("envVars must be an object of strings");
        }
        foreach (var variable in value.EnumerateObject())
        {
            var name = variable.Name;
            if (name.Length == 0 || name.Contains('=', StringComparison.Ordinal) || name.Contains('\0', StringComparison.Ordinal))
            {
                throw new InitRequestException($"invalid environment variable name '{name}': it must be non-empty, without '=' or NUL");
            }
            if (variable.Value.ValueKind != JsonValueKind.String)
            {
                throw new InitRequestException($"environment variable {name} must have a string value");
            }
            var text = variable.Value.GetString()!;
            if (text.Contains('\0', StringComparison.Ordinal))
            {
                throw new InitRequestException($"environment variable {name} contains a NUL character");
            }
            vars[name] = text;
        }
        return vars;
    }

    private static string? OptionalString(JsonProperty property) => property.Value.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.String => property.Value.GetString(),
        _ => throw new InitRequestException($"{property.Name} must be a string"),
    };
}

/// <summary>A <c>POST /init</c> body the agent refuses (answered 400 with the message).</summary>
internal sealed class InitRequestException(string message) : Exception(message);
