using System.Net;
using System.Text;
using System.Text.Json;
using Paddock.Client.Envd;
using Paddock.Client.Http;

namespace Paddock.Client;

/// <summary>
/// The code interpreter of a sandbox made from the <c>code-interpreter</c> template: stateful Python, JavaScript and
/// bash cells with rich results, over the same API as E2B's <c>@e2b/code-interpreter</c> (port 49999: /execute
/// streamed as NDJSON, /contexts).
/// </summary>
public sealed class SandboxCode
{
    /// <summary>The code interpreter's port in the sandbox.</summary>
    public const int Port = 49999;

    private readonly ResolvedConnection _connection;
    private readonly EnvdEndpoint _endpoint;

    internal SandboxCode(ResolvedConnection connection, EnvdEndpoint endpoint)
    {
        _connection = connection;
        _endpoint = endpoint;
    }

    /// <summary>
    /// Runs a cell and returns what it did once it ends. <paramref name="language"/> picks that language's default
    /// context; <paramref name="context"/> a context of your own (not both). <paramref name="timeout"/> (default 60 s)
    /// bounds the whole cell: when it passes, the call throws <see cref="SandboxTimeoutException"/> and the server
    /// interrupts the kernel.
    /// </summary>
    public async Task<Execution> RunAsync(string code, string? language = null, CodeContext? context = null, ExecutionCallbacks? callbacks = null,
        IReadOnlyDictionary<string, string>? envs = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(code);
        if (context is not null && language is not null)
        {
            throw new ArgumentException("give a context or a language, not both");
        }
        var body = new MemoryStream();
        using (var w = new Utf8JsonWriter(body))
        {
            w.WriteStartObject();
            w.WriteString("code", code);
            if (context is not null)
            {
                w.WriteString("context_id", context.Id);
            }
            if (language is not null)
            {
                w.WriteString("language", language);
            }
            if (envs is { Count: > 0 })
            {
                w.WriteStartObject("env_vars");
                foreach (var (k, v) in envs)
                {
                    w.WriteString(k, v);
                }
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        using var deadline = HttpTransport.StartDeadline(timeout ?? TimeSpan.FromSeconds(60), cancellationToken);
        var url = _endpoint.Url("execute");
        try
        {
            using var http = HttpTransport.CreateClient(_connection);
            using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(body.ToArray()) };
            request.Content.Headers.ContentType = new("application/json");
            _endpoint.Apply(request, user: null);
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline.Token).ConfigureAwait(false);
            await ThrowIfFailedAsync(response, deadline.Token).ConfigureAwait(false);
            await using var stream = await response.Content.ReadAsStreamAsync(deadline.Token).ConfigureAwait(false);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            return await ReadExecutionAsync(reader, callbacks, deadline.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not SandboxException)
        {
            throw HttpTransport.Translate(ex, url, cancellationToken, deadline, "running code");
        }
    }

    /// <summary>Creates a context (default language python, default cwd the user's home) and starts its kernel.</summary>
    public async Task<CodeContext> CreateContextAsync(string? language = null, string? cwd = null, CancellationToken cancellationToken = default)
    {
        var body = JsonSerializer.Serialize(new Dictionary<string, string?> { ["language"] = language, ["cwd"] = cwd }, CodeJson.Default.DictionaryStringString);
        var text = await SendAsync(HttpMethod.Post, "contexts", body, cancellationToken).ConfigureAwait(false);
        using var doc = JsonDocument.Parse(text);
        return ToContext(doc.RootElement);
    }

    /// <summary>Every context of the sandbox (the default ones included).</summary>
    public async Task<IReadOnlyList<CodeContext>> ListContextsAsync(CancellationToken cancellationToken = default)
    {
        var text = await SendAsync(HttpMethod.Get, "contexts", null, cancellationToken).ConfigureAwait(false);
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.EnumerateArray().Select(ToContext).ToList();
    }

    /// <summary>Restarts a context's kernel: its state is gone, its id stays.</summary>
    public Task RestartContextAsync(string contextId, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Post, $"contexts/{Uri.EscapeDataString(contextId)}/restart", null, cancellationToken);

    /// <summary>Removes a context and stops its kernel.</summary>
    public Task RemoveContextAsync(string contextId, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Delete, $"contexts/{Uri.EscapeDataString(contextId)}", null, cancellationToken);

    internal static async Task<Execution> ReadExecutionAsync(TextReader reader, ExecutionCallbacks? callbacks, CancellationToken cancellationToken)
    {
        var results = new List<ExecutionResult>();
        var stdout = new List<string>();
        var stderr = new List<string>();
        ExecutionError? error = null;
        int? count = null;
        while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
        {
            if (line.Length == 0)
            {
                continue;
            }
            using var doc = JsonDocument.Parse(line);
            var o = doc.RootElement;
            switch (o.GetProperty("type").GetString())
            {
                case "stdout":
                    var outText = o.GetProperty("text").GetString() ?? "";
                    stdout.Add(outText);
                    callbacks?.OnStdout?.Invoke(outText);
                    break;
                case "stderr":
                    var errText = o.GetProperty("text").GetString() ?? "";
                    stderr.Add(errText);
                    callbacks?.OnStderr?.Invoke(errText);
                    break;
                case "result":
                    var result = ToResult(o);
                    results.Add(result);
                    callbacks?.OnResult?.Invoke(result);
                    break;
                case "error":
                    error = new ExecutionError(Str(o, "name") ?? "", Str(o, "value") ?? "", Str(o, "traceback") ?? "");
                    callbacks?.OnError?.Invoke(error);
                    break;
                case "number_of_executions":
                    count = o.GetProperty("execution_count").GetInt32();
                    break;
                case "end_of_execution":
                    return new Execution { Results = results, Stdout = stdout, Stderr = stderr, Error = error, ExecutionCount = count };
            }
        }
        throw new SandboxException("the code interpreter's response ended before the end of the execution (the sandbox or its server went away)");
    }

    private static ExecutionResult ToResult(JsonElement o)
    {
        var known = new HashSet<string>(StringComparer.Ordinal) { "type", "is_main_result", "text", "html", "markdown", "svg", "png", "jpeg", "pdf", "latex", "javascript", "json", "data", "chart", "extra" };
        var extra = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        if (o.TryGetProperty("extra", out var e) && e.ValueKind == JsonValueKind.Object)
        {
            foreach (var p in e.EnumerateObject())
            {
                extra[p.Name] = p.Value.Clone();
            }
        }
        foreach (var p in o.EnumerateObject().Where(p => !known.Contains(p.Name)))
        {
            extra[p.Name] = p.Value.Clone();
        }
        return new ExecutionResult
        {
            IsMainResult = o.TryGetProperty("is_main_result", out var main) && main.ValueKind == JsonValueKind.True,
            Text = Str(o, "text"),
            Html = Str(o, "html"),
            Markdown = Str(o, "markdown"),
            Svg = Str(o, "svg"),
            Png = Str(o, "png"),
            Jpeg = Str(o, "jpeg"),
            Pdf = Str(o, "pdf"),
            Latex = Str(o, "latex"),
            Javascript = Str(o, "javascript"),
            Json = Element(o, "json"),
            Data = Element(o, "data"),
            Chart = Element(o, "chart"),
            Extra = extra,
        };
    }

    private static string? Str(JsonElement o, string name) => o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static JsonElement? Element(JsonElement o, string name) => o.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v.Clone() : null;

    private static CodeContext ToContext(JsonElement o) => new(Str(o, "id") ?? "", Str(o, "language") ?? "", Str(o, "cwd") ?? "");

    private async Task<string> SendAsync(HttpMethod method, string path, string? body, CancellationToken cancellationToken)
    {
        using var deadline = HttpTransport.StartDeadline(_connection.RequestTimeout, cancellationToken);
        var url = _endpoint.Url(path);
        try
        {
            using var http = HttpTransport.CreateClient(_connection);
            using var request = new HttpRequestMessage(method, url);
            if (body is not null)
            {
                request.Content = new StringContent(body, Encoding.UTF8, "application/json");
            }
            _endpoint.Apply(request, user: null);
            using var response = await http.SendAsync(request, deadline.Token).ConfigureAwait(false);
            await ThrowIfFailedAsync(response, deadline.Token).ConfigureAwait(false);
            return await response.Content.ReadAsStringAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not SandboxException)
        {
            throw HttpTransport.Translate(ex, url, cancellationToken, deadline, $"{method} /{path}");
        }
    }

    private static async Task ThrowIfFailedAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }
        var text = (await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)).Trim();
        var status = (int)response.StatusCode;
        var message = $"the code interpreter answered {status}: {text}";
        throw response.StatusCode switch
        {
            HttpStatusCode.NotFound => new NotFoundException(message) { StatusCode = status },
            HttpStatusCode.BadRequest or HttpStatusCode.UnprocessableEntity => new InvalidArgumentException(message) { StatusCode = status },
            _ => new SandboxException(message) { StatusCode = status },
        };
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string?>))]
[System.Text.Json.Serialization.JsonSourceGenerationOptions(DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class CodeJson : System.Text.Json.Serialization.JsonSerializerContext;
