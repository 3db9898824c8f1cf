using System.ComponentModel;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ModelContextProtocol;
using Paddock.Client;
using Paddock.Client.Http;

namespace Paddock.Mcp;

/// <summary>run_code's answer.</summary>
internal sealed record CodeRun(
    string Stdout,
    string Stderr,
    [property: Description("What the code evaluated to: the text form of each result; Formats names the rich forms the interpreter also made (png, html, ...).")] IReadOnlyList<CodeResult> Results,
    [property: Description("The error the code raised, null when none.")] CodeError? Error,
    int? ExecutionCount);

internal sealed record CodeResult(string? Text, IReadOnlyList<string> Formats, bool IsMainResult);

internal sealed record CodeError(string Name, string Value, string Traceback);

/// <summary>
/// A client of the code interpreter that E2B's code-interpreter templates run in the sandbox on port 49999:
/// <c>POST /execute</c> with <c>{code, language?, context_id?}</c>, answered by one JSON object a line (stdout,
/// stderr, result, error, number_of_executions, end_of_execution). Reached through the same proxy as envd, with the
/// sandbox's access token. A sandbox without an interpreter has nothing on that port: the proxy answers 502, and the
/// tool says what to do instead.
/// </summary>
internal static class CodeInterpreter
{
    public const int Port = 49999;

    private const int MaxLineBytes = 4 * 1024 * 1024;

    public static async Task<CodeRun> RunAsync(Sandbox sandbox, string code, string? language, string? contextId, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var connection = sandbox.Connection;
        var baseUrl = connection.EnvdUrl(sandbox.SandboxId, sandbox.SandboxDomain, Port);
        var body = new JsonObject { ["code"] = code };
        if (language is not null)
        {
            body["language"] = language;
        }
        if (contextId is not null)
        {
            body["context_id"] = contextId;
        }
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(baseUrl, "/execute"))
        {
            Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"),
        };
        if (connection.SandboxUrl is not null)
        {
            request.Headers.Add("E2b-Sandbox-Id", sandbox.SandboxId);
            request.Headers.Add("E2b-Sandbox-Port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        if (sandbox.EnvdAccessToken is { } token)
        {
            request.Headers.Add("X-Access-Token", token);
        }
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/x-ndjson"));

        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout);
        using var http = HttpTransport.CreateClient(connection);
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, limit.Token);
        }
        catch (HttpRequestException ex)
        {
            throw NoInterpreter(sandbox, ex.Message);
        }
        catch (OperationCanceledException) when (limit.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new McpException($"the code did not finish within {(int)timeout.TotalSeconds} s (raise timeoutSeconds)");
        }
        using (response)
        {
            if (response.StatusCode is HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout)
            {
                throw NoInterpreter(sandbox, await ReadMessageAsync(response, cancellationToken));
            }
            if (!response.IsSuccessStatusCode)
            {
                throw new McpException($"the code interpreter refused the request ({(int)response.StatusCode}): {await ReadMessageAsync(response, cancellationToken)}");
            }
            try
            {
                return await ReadEventsAsync(response, limit.Token);
            }
            catch (OperationCanceledException) when (limit.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                throw new McpException($"the code did not finish within {(int)timeout.TotalSeconds} s (raise timeoutSeconds; the kernel may still be running it)");
            }
            catch (IOException ex)
            {
                throw new McpException($"the code interpreter's answer broke off: {ex.Message}");
            }
        }
    }

    private static async Task<CodeRun> ReadEventsAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        var stdout = new BoundedText(SandboxTools.OutputLimitBytes);
        var stderr = new BoundedText(SandboxTools.OutputLimitBytes);
        var results = new List<CodeResult>();
        CodeError? error = null;
        int? count = null;
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length == 0)
            {
                continue;
            }
            if (line.Length > MaxLineBytes)
            {
                throw new McpException($"the code interpreter sent a line of {line.Length} characters, more than {MaxLineBytes}");
            }
            JsonNode? node;
            try
            {
                node = JsonNode.Parse(line);
            }
            catch (JsonException ex)
            {
                throw new McpException($"the code interpreter sent a line that is not JSON ({ex.Message}): is port {Port} a code interpreter?");
            }
            if (node is not JsonObject item)
            {
                continue;
            }
            switch ((string?)item["type"])
            {
                case "stdout":
                    stdout.Append((string?)item["text"]);
                    break;
                case "stderr":
                    stderr.Append((string?)item["text"]);
                    break;
                case "result":
                    if (results.Count < 100)
                    {
                        var formats = item.Where(p => p.Key is not ("type" or "text" or "is_main_result" or "extra") && p.Value is not null).Select(p => p.Key).ToList();
                        var text = (string?)item["text"];
                        results.Add(new CodeResult(text is { Length: > SandboxTools.OutputLimitBytes } ? text[..SandboxTools.OutputLimitBytes] + "[...]" : text,
                            formats, item["is_main_result"] is JsonValue main && main.GetValueKind() == JsonValueKind.True));
                    }
                    break;
                case "error":
                    error = new CodeError((string?)item["name"] ?? "", (string?)item["value"] ?? "", Truncate(TracebackText(item["traceback"])));
                    break;
                case "number_of_executions":
                    count = item["execution_count"] is JsonValue v && v.TryGetValue<int>(out var n) ? n : null;
                    break;
            }
        }
        return new CodeRun(stdout.ToString(), stderr.ToString(), results, error, count);
    }

    private static string TracebackText(JsonNode? traceback) => traceback switch
    {
        JsonArray lines => string.Join('\n', lines.Select(l => (string?)l)),
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => "",
    };

    private static string Truncate(string text) =>
        text.Length <= SandboxTools.OutputLimitBytes ? text : text[..SandboxTools.OutputLimitBytes] + "[...]";

    private static McpException NoInterpreter(Sandbox sandbox, string detail) => new(
        $"sandbox '{sandbox.SandboxId}' has no code interpreter (nothing answers on port {Port}: {detail}). "
        + $"It was created from template '{sandbox.TemplateId ?? "?"}'; create one from a code-interpreter template for run_code, "
        + "or run the code with run_command, e.g. python3 -c '...' or by writing a file and running it.");

    private static async Task<string> ReadMessageAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        try
        {
            if (JsonNode.Parse(text) is JsonObject o && (string?)o["message"] is { } message)
            {
                return message;
            }
        }
        catch (JsonException)
        {
            // Not JSON: the text itself, bounded below.
        }
        return text.Length > 500 ? text[..500] : text;
    }

    /// <summary>Keeps the first and last half of the limit of a stream that arrives in pieces.</summary>
    private sealed class BoundedText(int limit)
    {
        private readonly StringBuilder _head = new();
        private readonly Queue<string> _tail = new();
        private int _tailLength;
        private long _dropped;

        public void Append(string? text)
        {
            if (string.IsNullOrEmpty(text))
            {
                return;
            }
            var room = (limit / 2) - _head.Length;
            if (room > 0)
            {
                var take = Math.Min(room, text.Length);
                _head.Append(text, 0, take);
                text = text[take..];
            }
            if (text.Length == 0)
            {
                return;
            }
            _tail.Enqueue(text);
            _tailLength += text.Length;
            while (_tailLength > limit / 2 && _tail.Count > 1)
            {
                var old = _tail.Dequeue();
                _tailLength -= old.Length;
                _dropped += old.Length;
            }
            if (_tailLength > limit / 2)
            {
                var only = _tail.Dequeue();
                var cut = only.Length - (limit / 2);
                _dropped += cut;
                _tail.Enqueue(only[cut..]);
                _tailLength = limit / 2;
            }
        }

        public override string ToString() =>
            _dropped == 0
                ? _head + string.Concat(_tail)
                : $"{_head}\n[... {_dropped} characters omitted ...]\n{string.Concat(_tail)}";
    }
}
