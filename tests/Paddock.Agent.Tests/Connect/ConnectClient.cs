using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Tests.Connect;

/// <summary>How messages are encoded on the wire: Connect's binary protobuf or its JSON mapping.</summary>
public enum ConnectEncoding
{
    Proto,
    Json,
}

/// <summary>Per-call extras: the user (sent as E2B's SDKs do, <c>Authorization: Basic base64(user:)</c>), a deadline, headers.</summary>
public sealed record ConnectCallOptions
{
    public string? User { get; init; }

    /// <summary>Sent as <c>Connect-Timeout-Ms</c>.</summary>
    public int? TimeoutMs { get; init; }

    /// <summary>Sent as <c>Keepalive-Ping-Interval</c> (seconds), as E2B's SDKs do on process streams.</summary>
    public int? KeepAliveSeconds { get; init; }

    public IReadOnlyDictionary<string, string>? Headers { get; init; }
}

/// <summary>
/// A minimal Connect RPC client for protocol tests (connectrpc.com/docs/protocol): unary calls, server streams and
/// client streams, in binary or JSON encoding, plus raw access for malformed requests. Errors the server sends come
/// back as <see cref="ConnectException"/>.
/// </summary>
public sealed class ConnectClient
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default);
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private readonly HttpClient _http;

    public ConnectClient(HttpClient http, ConnectEncoding encoding = ConnectEncoding.Proto)
    {
        _http = http;
        Encoding = encoding;
    }

    public ConnectEncoding Encoding { get; }

    /// <summary>A unary call to <paramref name="path"/> ("/process.Process/List").</summary>
    public async Task<TResponse> UnaryAsync<TRequest, TResponse>(string path, TRequest request, CancellationToken cancellationToken, ConnectCallOptions? options = null)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>, new()
    {
        using var message = new HttpRequestMessage(HttpMethod.Post, path)
        {
            Content = new ByteArrayContent(Encode(request)),
        };
        message.Content.Headers.ContentType = new MediaTypeHeaderValue(Encoding == ConnectEncoding.Json ? "application/json" : "application/proto");
        Apply(message, options);
        using var response = await _http.SendAsync(message, cancellationToken);
        var body = await response.Content.ReadAsByteArrayAsync(cancellationToken);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw ParseError(body, (int)response.StatusCode);
        }
        return Decode<TResponse>(body);
    }

    /// <summary>Opens a server stream; the call's response headers have arrived when this returns.</summary>
    public async Task<ConnectServerStream<TResponse>> ServerStreamAsync<TRequest, TResponse>(string path, TRequest request, CancellationToken cancellationToken, ConnectCallOptions? options = null)
        where TRequest : IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>, new()
    {
        var message = new HttpRequestMessage(HttpMethod.Post, path)
        {
            Content = new ByteArrayContent(Envelope(0, Encode(request))),
        };
        return await OpenStreamAsync<TResponse>(message, options, cancellationToken);
    }

    /// <summary>A client stream: sends every message of <paramref name="requests"/> as it comes, then reads the one response.</summary>
    public async Task<TResponse> ClientStreamAsync<TRequest, TResponse>(string path, IAsyncEnumerable<TRequest> requests, CancellationToken cancellationToken, ConnectCallOptions? options = null)
        where TRequest : IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>, new()
    {
        var message = new HttpRequestMessage(HttpMethod.Post, path)
        {
            Content = new EnvelopeStreamContent<TRequest>(requests, this),
        };
        await using var stream = await OpenStreamAsync<TResponse>(message, options, cancellationToken);
        var response = await stream.ReadAsync(cancellationToken)
            ?? throw new ConnectException(ConnectCode.Internal, "the client stream's response carried no message");
        if (await stream.ReadAsync(cancellationToken) is not null)
        {
            throw new ConnectException(ConnectCode.Internal, "the client stream's response carried more than one message");
        }
        return response;
    }

    /// <summary>Posts raw bytes, for requests a real client would never send.</summary>
    public async Task<HttpResponseMessage> PostRawAsync(string path, string contentType, byte[] body, CancellationToken cancellationToken)
    {
        using var message = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(body) };
        message.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        return await _http.SendAsync(message, cancellationToken);
    }

    /// <summary>The 5-byte Connect envelope prefix and payload.</summary>
    public static byte[] Envelope(byte flags, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[Paddock.Envd.Connect.Envelope.HeaderSize + payload.Length];
        Paddock.Envd.Connect.Envelope.WriteHeader(frame, flags, payload.Length);
        payload.CopyTo(frame.AsSpan(Paddock.Envd.Connect.Envelope.HeaderSize));
        return frame;
    }

    /// <summary>
    /// Reads one envelope from a streaming body: null at a clean end. Throws <see cref="ConnectException"/> for an
    /// end-of-stream message carrying an error.
    /// </summary>
    public static async Task<(byte Flags, byte[] Payload)?> ReadEnvelopeAsync(Stream body, CancellationToken cancellationToken)
    {
        var header = new byte[Paddock.Envd.Connect.Envelope.HeaderSize];
        var got = await ReadFullAsync(body, header, cancellationToken);
        if (got == 0)
        {
            return null;
        }
        if (got < header.Length)
        {
            throw new IOException("the response ended inside an envelope prefix");
        }
        var (flags, length) = Paddock.Envd.Connect.Envelope.ReadHeader(header);
        var payload = new byte[length];
        if (await ReadFullAsync(body, payload, cancellationToken) < payload.Length)
        {
            throw new IOException("the response ended inside an envelope");
        }
        return (flags, payload);
    }

    internal byte[] Encode<T>(T message)
        where T : IMessage<T> =>
        Encoding == ConnectEncoding.Json ? System.Text.Encoding.UTF8.GetBytes(Formatter.Format(message)) : message.ToByteArray();

    internal T Decode<T>(byte[] payload)
        where T : IMessage<T>, new()
    {
        if (Encoding == ConnectEncoding.Json)
        {
            return Parser.Parse<T>(System.Text.Encoding.UTF8.GetString(payload));
        }
        var message = new T();
        message.MergeFrom(payload);
        return message;
    }

    private async Task<ConnectServerStream<TResponse>> OpenStreamAsync<TResponse>(HttpRequestMessage message, ConnectCallOptions? options, CancellationToken cancellationToken)
        where TResponse : class, IMessage<TResponse>, new()
    {
        message.Content!.Headers.ContentType = new MediaTypeHeaderValue(Encoding == ConnectEncoding.Json ? "application/connect+json" : "application/connect+proto");
        Apply(message, options);
        HttpResponseMessage? response = null;
        try
        {
            response = await _http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw ParseError(await response.Content.ReadAsByteArrayAsync(cancellationToken), (int)response.StatusCode);
            }
            var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            return new ConnectServerStream<TResponse>(this, message, response, body);
        }
        catch
        {
            response?.Dispose();
            message.Dispose();
            throw;
        }
    }

    private static void Apply(HttpRequestMessage message, ConnectCallOptions? options)
    {
        if (options is null)
        {
            return;
        }
        if (options.User is not null)
        {
            message.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(options.User + ":")));
        }
        if (options.TimeoutMs is { } ms)
        {
            message.Headers.Add("Connect-Timeout-Ms", ms.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        if (options.KeepAliveSeconds is { } s)
        {
            message.Headers.Add("Keepalive-Ping-Interval", s.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        foreach (var (key, value) in options.Headers ?? new Dictionary<string, string>())
        {
            message.Headers.TryAddWithoutValidation(key, value);
        }
    }

    /// <summary>A Connect error from a JSON error body ({"code","message"}), or from the HTTP status when it has none.</summary>
    internal static ConnectException ParseError(byte[] body, int httpStatus)
    {
        try
        {
            using var json = JsonDocument.Parse(body);
            var root = json.RootElement;
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("error", out var nested))
            {
                root = nested;
            }
            var code = root.TryGetProperty("code", out var c) && c.ValueKind == JsonValueKind.String ? ConnectCodes.FromWire(c.GetString()) : ConnectCodes.FromHttpStatus(httpStatus);
            var text = root.TryGetProperty("message", out var m) ? m.GetString() ?? "" : "";
            return new ConnectException(code, text);
        }
        catch (JsonException)
        {
            return new ConnectException(ConnectCodes.FromHttpStatus(httpStatus), $"HTTP {httpStatus}: {System.Text.Encoding.UTF8.GetString(body)}");
        }
    }

    private static async Task<int> ReadFullAsync(Stream body, byte[] buffer, CancellationToken cancellationToken)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = await body.ReadAsync(buffer.AsMemory(total), cancellationToken);
            if (n == 0)
            {
                break;
            }
            total += n;
        }
        return total;
    }

    private sealed class EnvelopeStreamContent<T> : HttpContent
        where T : IMessage<T>
    {
        private readonly IAsyncEnumerable<T> _messages;
        private readonly ConnectClient _client;

        public EnvelopeStreamContent(IAsyncEnumerable<T> messages, ConnectClient client)
        {
            _messages = messages;
            _client = client;
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            await foreach (var message in _messages.WithCancellation(cancellationToken))
            {
                await stream.WriteAsync(Envelope(0, _client.Encode(message)), cancellationToken);
                await stream.FlushAsync(cancellationToken);
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}

/// <summary>The response side of a server stream. Dispose it to abandon the call (the connection is closed).</summary>
public sealed class ConnectServerStream<T> : IAsyncDisposable
    where T : class, IMessage<T>, new()
{
    private readonly ConnectClient _client;
    private readonly HttpRequestMessage _request;
    private readonly HttpResponseMessage _response;
    private readonly Stream _body;
    private bool _ended;

    internal ConnectServerStream(ConnectClient client, HttpRequestMessage request, HttpResponseMessage response, Stream body)
    {
        _client = client;
        _request = request;
        _response = response;
        _body = body;
    }

    /// <summary>The next message; null after a successful end of stream; throws <see cref="ConnectException"/> for an error end.</summary>
    public async Task<T?> ReadAsync(CancellationToken cancellationToken)
    {
        if (_ended)
        {
            return default;
        }
        var envelope = await ConnectClient.ReadEnvelopeAsync(_body, cancellationToken)
            ?? throw new IOException("the stream ended without an end-of-stream message");
        if ((envelope.Flags & Paddock.Envd.Connect.Envelope.EndStreamFlag) != 0)
        {
            _ended = true;
            var text = System.Text.Encoding.UTF8.GetString(envelope.Payload);
            if (text.Contains("\"error\"", StringComparison.Ordinal))
            {
                throw ConnectClient.ParseError(envelope.Payload, 200);
            }
            return default;
        }
        return _client.Decode<T>(envelope.Payload);
    }

    /// <summary>Every remaining message until the end of the stream.</summary>
    public async Task<List<T>> ReadAllAsync(CancellationToken cancellationToken)
    {
        var all = new List<T>();
        while (await ReadAsync(cancellationToken) is { } message)
        {
            all.Add(message);
        }
        return all;
    }

    public async ValueTask DisposeAsync()
    {
        await _body.DisposeAsync();
        _response.Dispose();
        _request.Dispose();
    }
}
