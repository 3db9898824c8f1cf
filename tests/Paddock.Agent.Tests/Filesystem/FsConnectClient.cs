using System.Buffers.Binary;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Tests.Filesystem;

/// <summary>
/// A minimal Connect client for the filesystem tests: unary calls in JSON or binary, and server streams read one
/// message at a time. Errors come back as <see cref="ConnectException"/> with the server's code and message.
/// </summary>
internal sealed class FsConnectClient
{
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private readonly HttpClient _http;

    public FsConnectClient(HttpClient http, bool json, string? user = null)
    {
        _http = http;
        Json = json;
        User = user;
    }

    public bool Json { get; }

    public string? User { get; }

    public FsConnectClient As(string? user) => new(_http, Json, user);

    public async Task<TResponse> CallAsync<TResponse>(string method, IMessage request, TimeSpan? timeout = null)
        where TResponse : IMessage<TResponse>, new()
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        using var message = new HttpRequestMessage(HttpMethod.Post, "/filesystem.Filesystem/" + method);
        message.Content = Json
            ? new StringContent(JsonFormatter.Default.Format(request), Encoding.UTF8, "application/json")
            : new ByteArrayContent(request.ToByteArray()) { Headers = { ContentType = new MediaTypeHeaderValue("application/proto") } };
        message.Headers.Add("Connect-Protocol-Version", "1");
        AddUser(message);
        using var response = await _http.SendAsync(message, cts.Token);
        var body = await response.Content.ReadAsByteArrayAsync(cts.Token);
        if (!response.IsSuccessStatusCode)
        {
            throw ParseError(Encoding.UTF8.GetString(body), (int)response.StatusCode);
        }
        if (Json)
        {
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
            return Parser.Parse<TResponse>(Encoding.UTF8.GetString(body));
        }
        Assert.Equal("application/proto", response.Content.Headers.ContentType?.MediaType);
        var result = new TResponse();
        result.MergeFrom(body);
        return result;
    }

    /// <summary>Opens a server stream; the first message (or error) is read by the caller.</summary>
    public async Task<ServerStream<TResponse>> StreamAsync<TResponse>(string method, IMessage request, int? keepAliveSeconds = null)
        where TResponse : IMessage<TResponse>, new()
    {
        var payload = Json ? Encoding.UTF8.GetBytes(JsonFormatter.Default.Format(request)) : request.ToByteArray();
        var framed = new byte[5 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(framed.AsSpan(1), (uint)payload.Length);
        payload.CopyTo(framed, 5);
        var message = new HttpRequestMessage(HttpMethod.Post, "/filesystem.Filesystem/" + method)
        {
            Content = new ByteArrayContent(framed) { Headers = { ContentType = new MediaTypeHeaderValue(Json ? "application/connect+json" : "application/connect+proto") } },
        };
        message.Headers.Add("Connect-Protocol-Version", "1");
        if (keepAliveSeconds is { } k)
        {
            message.Headers.Add("Keepalive-Ping-Interval", k.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        AddUser(message);
        var cts = new CancellationTokenSource();
        try
        {
            using var headersTimeout = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
            headersTimeout.CancelAfter(TimeSpan.FromSeconds(30));
            var response = await _http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, headersTimeout.Token);
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            var body = await response.Content.ReadAsStreamAsync(headersTimeout.Token);
            return new ServerStream<TResponse>(message, response, body, cts, Json);
        }
        catch
        {
            cts.Dispose();
            message.Dispose();
            throw;
        }
    }

    private void AddUser(HttpRequestMessage message)
    {
        // Explicit request messages do not take the client's defaults: carry them over, so an h2c client speaks h2c.
        message.Version = _http.DefaultRequestVersion;
        message.VersionPolicy = _http.DefaultVersionPolicy;
        if (User is not null)
        {
            message.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(User + ":")));
        }
    }

    internal static ConnectException ParseError(string json, int status)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var code = doc.RootElement.GetProperty("code").GetString();
            var message = doc.RootElement.TryGetProperty("message", out var m) ? m.GetString() ?? "" : "";
            return new ConnectException(ConnectCodes.FromWire(code), message);
        }
        catch (JsonException)
        {
            return new ConnectException(ConnectCode.Unknown, $"HTTP {status}: {json}");
        }
    }
}

/// <summary>The response side of a server stream.</summary>
internal sealed class ServerStream<T> : IAsyncDisposable
    where T : IMessage<T>, new()
{
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private readonly HttpRequestMessage _request;
    private readonly HttpResponseMessage _response;
    private readonly Stream _body;
    private readonly CancellationTokenSource _cts;
    private readonly bool _json;

    public ServerStream(HttpRequestMessage request, HttpResponseMessage response, Stream body, CancellationTokenSource cts, bool json)
    {
        _request = request;
        _response = response;
        _body = body;
        _cts = cts;
        _json = json;
    }

    /// <summary>The next message; null at a clean end of the stream; ConnectException when it ends with an error.</summary>
    public async Task<T?> NextAsync(TimeSpan timeout)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(_cts.Token);
        cts.CancelAfter(timeout);
        var header = new byte[5];
        await _body.ReadExactlyAsync(header, cts.Token);
        var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(1));
        var payload = new byte[length];
        await _body.ReadExactlyAsync(payload, cts.Token);
        if ((header[0] & 0x02) != 0)
        {
            using var doc = JsonDocument.Parse(payload);
            if (doc.RootElement.TryGetProperty("error", out var error))
            {
                throw FsConnectClient.ParseError(error.GetRawText(), 200);
            }
            return default;
        }
        if (_json)
        {
            return Parser.Parse<T>(Encoding.UTF8.GetString(payload));
        }
        var message = new T();
        message.MergeFrom(payload);
        return message;
    }

    /// <summary>Reads until <paramref name="match"/> accepts a message; fails the test after <paramref name="timeout"/>.</summary>
    public async Task<T> WaitForAsync(Func<T, bool> match, TimeSpan timeout, List<T>? seen = null)
    {
        seen ??= [];
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                throw new TimeoutException($"no matching message within {timeout}; saw: {string.Join(", ", seen)}");
            }
            T? message;
            try
            {
                message = await NextAsync(left);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"no matching message within {timeout}; saw: {string.Join(", ", seen)}");
            }
            Assert.NotNull(message);
            seen.Add(message);
            if (match(message))
            {
                return message;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _cts.CancelAsync();
        await _body.DisposeAsync();
        _response.Dispose();
        _request.Dispose();
        _cts.Dispose();
    }
}
