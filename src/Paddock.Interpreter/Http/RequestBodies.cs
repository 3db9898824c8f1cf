using System.Text.Json;

namespace Paddock.Interpreter.Http;

/// <summary>A request body that is not what the route takes: answered 422 (as E2B's FastAPI validation does).</summary>
internal sealed class BadBodyException(string message) : Exception(message);

/// <summary>POST /execute's body (E2B's ExecutionRequest: code, context_id, language, env_vars).</summary>
internal sealed record ExecuteRequest(string Code, string? ContextId, string? Language, IReadOnlyDictionary<string, string>? EnvVars)
{
    /// <summary>Parses and checks the body; throws <see cref="BadBodyException"/> saying what is wrong.</summary>
    public static ExecuteRequest Parse(ReadOnlySpan<byte> body)
    {
        using var doc = RequestBodies.ParseObject(body);
        var root = doc.RootElement;
        if (!root.TryGetProperty("code", out var code) || code.ValueKind == JsonValueKind.Null)
        {
            throw new BadBodyException("body.code is required: the code to run, as a string");
        }
        if (code.ValueKind != JsonValueKind.String)
        {
            throw new BadBodyException($"body.code must be a string, not {RequestBodies.Describe(code.ValueKind)}");
        }
        return new ExecuteRequest(
            code.GetString()!,
            RequestBodies.OptionalString(root, "context_id"),
            RequestBodies.OptionalString(root, "language"),
            RequestBodies.OptionalStringMap(root, "env_vars"));
    }
}

/// <summary>POST /contexts' body (E2B's CreateContext: language, cwd; both optional).</summary>
internal sealed record CreateContextRequest(string? Language, string? Cwd)
{
    public static CreateContextRequest Parse(ReadOnlySpan<byte> body)
    {
        if (body.Trim(" \t\r\n"u8).IsEmpty)
        {
            return new CreateContextRequest(null, null);
        }
        using var doc = RequestBodies.ParseObject(body);
        return new CreateContextRequest(RequestBodies.OptionalString(doc.RootElement, "language"), RequestBodies.OptionalString(doc.RootElement, "cwd"));
    }
}

internal static class RequestBodies
{
    public static JsonDocument ParseObject(ReadOnlySpan<byte> body)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body.ToArray());
        }
        catch (JsonException ex)
        {
            throw new BadBodyException($"the body is not valid JSON (line {ex.LineNumber + 1}, byte {ex.BytePositionInLine + 1})");
        }
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            var kind = doc.RootElement.ValueKind;
            doc.Dispose();
            throw new BadBodyException($"the body must be a JSON object, not {Describe(kind)}");
        }
        return doc;
    }

    public static string? OptionalString(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        return value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : throw new BadBodyException($"body.{name} must be a string, not {Describe(value.ValueKind)}");
    }

    public static IReadOnlyDictionary<string, string>? OptionalStringMap(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new BadBodyException($"body.{name} must be an object of strings, not {Describe(value.ValueKind)}");
        }
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in value.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
            {
                throw new BadBodyException($"body.{name}.{p.Name} must be a string, not {Describe(p.Value.ValueKind)}");
            }
            if (!Contexts.EnvSnippets.IsValidName(p.Name))
            {
                throw new BadBodyException($"body.{name}: '{p.Name}' is not a valid environment variable name (letters, digits and _, not starting with a digit)");
            }
            map[p.Name] = p.Value.GetString()!;
        }
        return map;
    }

    public static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Number => "a number",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        JsonValueKind.String => "a string",
        _ => "nothing",
    };
}
