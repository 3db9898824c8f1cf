using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Paddock.Client.Http;

namespace Paddock.Client.Api;

/// <summary>
/// E2B's REST control plane (spec/openapi.yml): sandboxes, their metrics and logs, templates. Authenticates with
/// <c>X-API-Key</c>. Every failure leaves as one of the SDK's exceptions.
/// </summary>
internal sealed partial class ApiClient : IDisposable
{
    private readonly ResolvedConnection _connection;
    private readonly HttpClient _http;

    public ApiClient(ResolvedConnection connection)
    {
        _connection = connection;
        _http = HttpTransport.CreateClient(connection);
    }

    public Task<SandboxDto> CreateSandboxAsync(NewSandboxDto request, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Post, "sandboxes", Json(request, ApiJson.Default.NewSandboxDto), ApiJson.Default.SandboxDto, sandboxId: null, cancellationToken);

    public Task<SandboxDto> ConnectSandboxAsync(string sandboxId, int timeoutSeconds, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Post, $"sandboxes/{Escape(sandboxId)}/connect", Json(new TimeoutDto { Timeout = timeoutSeconds }, ApiJson.Default.TimeoutDto), ApiJson.Default.SandboxDto, sandboxId, cancellationToken);

    public Task<SandboxDetailDto> GetSandboxAsync(string sandboxId, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Get, $"sandboxes/{Escape(sandboxId)}", null, ApiJson.Default.SandboxDetailDto, sandboxId, cancellationToken);

    /// <summary>POST /sandboxes/{id}/pause: false when it was paused already (409).</summary>
    public async Task<bool> PauseSandboxAsync(string sandboxId, bool? keepMemory, CancellationToken cancellationToken)
    {
        try
        {
            await SendAsync<object>(HttpMethod.Post, $"sandboxes/{Escape(sandboxId)}/pause", Json(new PauseDto { Memory = keepMemory }, ApiJson.Default.PauseDto), null, sandboxId, cancellationToken);
            return true;
        }
        catch (SandboxException ex) when (ex.StatusCode == 409)
        {
            return false;
        }
    }

    /// <summary>POST /sandboxes/{id}/fork: one entry per copy, in order.</summary>
    public Task<List<ForkResultDto>> ForkSandboxAsync(string sandboxId, int count, int? timeoutSeconds, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Post, $"sandboxes/{Escape(sandboxId)}/fork", Json(new ForkDto { Count = count, Timeout = timeoutSeconds }, ApiJson.Default.ForkDto), ApiJson.Default.ListForkResultDto, sandboxId, cancellationToken);

    /// <summary>DELETE /sandboxes/{id}: false when the sandbox did not exist.</summary>
    public async Task<bool> KillSandboxAsync(string sandboxId, CancellationToken cancellationToken)
    {
        try
        {
            await SendAsync<object>(HttpMethod.Delete, $"sandboxes/{Escape(sandboxId)}", null, null, sandboxId, cancellationToken);
            return true;
        }
        catch (SandboxNotFoundException)
        {
            return false;
        }
    }

    public Task SetTimeoutAsync(string sandboxId, int timeoutSeconds, CancellationToken cancellationToken) =>
        SendAsync<object>(HttpMethod.Post, $"sandboxes/{Escape(sandboxId)}/timeout", Json(new TimeoutDto { Timeout = timeoutSeconds }, ApiJson.Default.TimeoutDto), null, sandboxId, cancellationToken);

    public Task<List<SandboxMetricDto>> GetMetricsAsync(string sandboxId, DateTimeOffset? start, DateTimeOffset? end, CancellationToken cancellationToken)
    {
        var query = new QueryBuilder();
        query.Add("start", start?.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture));
        query.Add("end", end?.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture));
        return SendAsync(HttpMethod.Get, $"sandboxes/{Escape(sandboxId)}/metrics{query}", null, ApiJson.Default.ListSandboxMetricDto, sandboxId, cancellationToken);
    }

    public Task<SandboxLogsV2Dto> GetLogsAsync(string sandboxId, DateTimeOffset? cursor, int? limit, CancellationToken cancellationToken)
    {
        var query = new QueryBuilder();
        query.Add("cursor", cursor?.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture));
        query.Add("limit", limit?.ToString(CultureInfo.InvariantCulture));
        return SendAsync(HttpMethod.Get, $"v2/sandboxes/{Escape(sandboxId)}/logs{query}", null, ApiJson.Default.SandboxLogsV2Dto, sandboxId, cancellationToken);
    }

    /// <summary>GET /sandboxes/{id}/audit (Paddock's audit trail): the page after <paramref name="after"/>.</summary>
    public Task<SandboxAuditPage> GetAuditAsync(string sandboxId, long after, int? limit, CancellationToken cancellationToken)
    {
        var query = new QueryBuilder();
        query.Add("after", after.ToString(CultureInfo.InvariantCulture));
        query.Add("limit", limit?.ToString(CultureInfo.InvariantCulture));
        return SendAsync(HttpMethod.Get, $"sandboxes/{Escape(sandboxId)}/audit{query}", null, ApiJson.Default.SandboxAuditPage, sandboxId, cancellationToken);
    }

    /// <summary>One page of GET /v2/sandboxes, and the token of the next page (X-Next-Token), if any.</summary>
    public async Task<(List<SandboxDetailDto> Items, string? NextToken)> ListSandboxesAsync(SandboxListFilter filter, string? nextToken, CancellationToken cancellationToken)
    {
        var query = new QueryBuilder();
        if (filter.Metadata is { Count: > 0 } metadata)
        {
            // "user=abc&app=prod", each key and value URL-encoded (openapi.yml), then the whole as one parameter.
            query.Add("metadata", string.Join('&', metadata.Select(kv => $"{Uri.EscapeDataString(kv.Key)}={Uri.EscapeDataString(kv.Value)}")));
        }
        if (filter.States is { Count: > 0 } states)
        {
            query.Add("state", string.Join(',', states.Select(s => s == SandboxState.Paused ? "paused" : "running")));
        }
        query.Add("template", filter.Template);
        query.Add("limit", filter.PageSize?.ToString(CultureInfo.InvariantCulture));
        query.Add("nextToken", nextToken);
        using var deadline = HttpTransport.StartDeadline(_connection.RequestTimeout, cancellationToken);
        var uri = Url($"v2/sandboxes{query}");
        try
        {
            using var request = NewRequest(HttpMethod.Get, uri, null);
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token).ConfigureAwait(false);
            await ThrowIfFailed(response, null, deadline.Token).ConfigureAwait(false);
            var items = await ReadJson(response, ApiJson.Default.ListSandboxDetailDto, deadline.Token).ConfigureAwait(false);
            var next = response.Headers.TryGetValues("X-Next-Token", out var values) ? values.FirstOrDefault() : null;
            return (items, string.IsNullOrEmpty(next) ? null : next);
        }
        catch (Exception ex) when (HttpTransport.IsTransportFailure(ex))
        {
            throw HttpTransport.Translate(ex, uri, cancellationToken, deadline, "listing sandboxes");
        }
    }

    /// <summary>POST /sandboxes/{id}/snapshots: the sandbox's filesystem as a new template.</summary>
    public Task<SnapshotDto> CreateSnapshotAsync(string sandboxId, string? name, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Post, $"sandboxes/{Escape(sandboxId)}/snapshots", Json(new SnapshotRequestDto { Name = name }, ApiJson.Default.SnapshotRequestDto), ApiJson.Default.SnapshotDto, sandboxId, cancellationToken);

    /// <summary>DELETE /templates/{id}: false when there was no such template.</summary>
    public async Task<bool> DeleteTemplateAsync(string templateId, CancellationToken cancellationToken)
    {
        try
        {
            await SendAsync<object>(HttpMethod.Delete, $"templates/{Escape(templateId)}", null, null, sandboxId: null, cancellationToken);
            return true;
        }
        catch (NotFoundException)
        {
            return false;
        }
    }

    public Task<List<TemplateDto>> ListTemplatesAsync(CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Get, "templates", null, ApiJson.Default.ListTemplateDto, sandboxId: null, cancellationToken);

    private async Task<T> SendAsync<T>(HttpMethod method, string path, HttpContent? content, JsonTypeInfo<T>? responseType, string? sandboxId, CancellationToken cancellationToken)
    {
        using var deadline = HttpTransport.StartDeadline(_connection.RequestTimeout, cancellationToken);
        var uri = Url(path);
        try
        {
            using var request = NewRequest(method, uri, content);
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token).ConfigureAwait(false);
            await ThrowIfFailed(response, sandboxId, deadline.Token).ConfigureAwait(false);
            return responseType is null ? default! : await ReadJson(response, responseType, deadline.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (HttpTransport.IsTransportFailure(ex))
        {
            throw HttpTransport.Translate(ex, uri, cancellationToken, deadline, $"{method} {uri.AbsolutePath}");
        }
    }

    private HttpRequestMessage NewRequest(HttpMethod method, Uri uri, HttpContent? content)
    {
        var request = new HttpRequestMessage(method, uri) { Content = content };
        if (_connection.ApiKey is { } key)
        {
            request.Headers.TryAddWithoutValidation("X-API-Key", key);
        }
        request.Headers.UserAgent.Add(new ProductInfoHeaderValue("paddock-client", typeof(ApiClient).Assembly.GetName().Version?.ToString(3) ?? "0"));
        return request;
    }

    private Uri Url(string relative)
    {
        var baseUrl = _connection.ApiUrl.ToString();
        return new Uri(baseUrl.EndsWith('/') ? baseUrl + relative : baseUrl + "/" + relative);
    }

    private static string Escape(string segment) => Uri.EscapeDataString(segment);

    private static StringContent Json<T>(T body, JsonTypeInfo<T> type) =>
        new(JsonSerializer.Serialize(body, type), Encoding.UTF8, "application/json");

    private static async Task<T> ReadJson<T>(HttpResponseMessage response, JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return JsonSerializer.Deserialize(text, type) ?? throw new SandboxException($"{response.RequestMessage?.RequestUri?.AbsolutePath} answered an empty body") { StatusCode = (int)response.StatusCode };
        }
        catch (JsonException ex)
        {
            throw new SandboxException($"{response.RequestMessage?.RequestUri?.AbsolutePath} answered a body that is not the expected JSON: {ex.Message}", ex) { StatusCode = (int)response.StatusCode };
        }
    }

    /// <summary>Turns a non-2xx answer into the SDK's exception for it, with the server's message.</summary>
    private static async Task ThrowIfFailed(HttpResponseMessage response, string? sandboxId, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }
        var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        throw ErrorFor(response.StatusCode, body, sandboxId, response.RequestMessage?.RequestUri);
    }

    internal static SandboxException ErrorFor(HttpStatusCode status, string body, string? sandboxId, Uri? uri)
    {
        var message = ServerMessage(body) ?? (string.IsNullOrWhiteSpace(body) ? status.ToString() : body.Trim());
        var code = (int)status;
        return status switch
        {
            HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden =>
                new AuthenticationException($"the API key was refused ({code}): {message}") { StatusCode = code },
            HttpStatusCode.NotFound when sandboxId is not null =>
                new SandboxNotFoundException(sandboxId, $"sandbox {sandboxId} was not found: {message}") { StatusCode = code },
            HttpStatusCode.NotFound =>
                new NotFoundException($"{uri?.AbsolutePath} was not found: {message}") { StatusCode = code },
            HttpStatusCode.BadRequest =>
                new InvalidArgumentException($"the request was refused: {message}") { StatusCode = code },
            _ => new SandboxException($"the server answered {code}: {message}") { StatusCode = code },
        };
    }

    private static string? ServerMessage(string body)
    {
        if (string.IsNullOrWhiteSpace(body) || body.TrimStart()[0] != '{')
        {
            return null;
        }
        try
        {
            return JsonSerializer.Deserialize(body, ApiJson.Default.ErrorDto)?.Message;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public void Dispose() => _http.Dispose();

    private sealed class QueryBuilder
    {
        private readonly StringBuilder _query = new();

        public void Add(string name, string? value)
        {
            if (value is null)
            {
                return;
            }
            _query.Append(_query.Length == 0 ? '?' : '&').Append(Uri.EscapeDataString(name)).Append('=').Append(Uri.EscapeDataString(value));
        }

        public override string ToString() => _query.ToString();
    }
}
