using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Paddock.Client.Http;
using Paddock.Envd.Connect;

namespace Paddock.Client.Envd;

/// <summary>
/// A Connect RPC client (connectrpc.com/docs/protocol) over <see cref="HttpClient"/>, in the binary protobuf
/// codec: unary calls as <c>application/proto</c>, server streams as <c>application/connect+proto</c> read
/// envelope by envelope as they arrive (<see cref="HttpCompletionOption.ResponseHeadersRead"/>).
/// Errors the server sends come out as <see cref="ConnectException"/>; transport failures as the SDK's exceptions.
/// </summary>
internal sealed class ConnectRpcClient
{
    // envd's own limit for a message; a larger prefix means a broken or hostile stream, not a big message.
    private const int MaxMessageBytes = 64 * 1024 * 1024;

    private readonly HttpClient _http;
    private readonly EnvdEndpoint _endpoint;

    public ConnectRpcClient(HttpClient http, EnvdEndpoint endpoint)
    {
        _http = http;
        _endpoint = endpoint;
    }

    public async Task<TResponse> UnaryAsync<TRequest, TResponse>(string method, TRequest request, CallOptions call, MessageParser<TResponse> parser, CancellationToken cancellationToken)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        using var deadline = HttpTransport.StartDeadline(call.RequestTimeout, cancellationToken);
        var uri = _endpoint.Url(method);
        try
        {
            using var message = NewRequest(uri, call);
            message.Content = new ByteArrayContent(request.ToByteArray());
            message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/proto");
            using var response = await _http.SendAsync(message, HttpCompletionOption.ResponseContentRead, deadline.Token).ConfigureAwait(false);
            var body = await response.Content.ReadAsByteArrayAsync(deadline.Token).ConfigureAwait(false);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw ErrorFromUnary(response, body);
            }
            return parser.ParseFrom(body);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new SandboxException($"{method}: the sandbox answered a malformed message: {ex.Message}", ex);
        }
        catch (Exception ex) when (HttpTransport.IsTransportFailure(ex))
        {
            throw HttpTransport.Translate(ex, uri, cancellationToken, deadline, method);
        }
    }

    /// <summary>
    /// Starts a server stream and returns once the response headers arrived. The request timeout covers only this
    /// start; the stream then lives until it ends, <paramref name="cancellationToken"/> fires, or it is disposed.
    /// </summary>
    public async Task<ServerStream<TResponse>> ServerStreamAsync<TRequest, TResponse>(string method, TRequest request, CallOptions call, MessageParser<TResponse> parser, CancellationToken cancellationToken)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        var lifetime = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var deadline = HttpTransport.StartDeadline(call.RequestTimeout, lifetime.Token);
        var uri = _endpoint.Url(method);
        HttpResponseMessage? response = null;
        try
        {
            using var message = NewRequest(uri, call);
            var payload = request.ToByteArray();
            var framed = new byte[Envelope.HeaderSize + payload.Length];
            Envelope.WriteHeader(framed, 0, payload.Length);
            payload.CopyTo(framed.AsSpan(Envelope.HeaderSize));
            message.Content = new ByteArrayContent(framed);
            message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/connect+proto");
            response = await _http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, deadline.Token).ConfigureAwait(false);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                var body = await response.Content.ReadAsByteArrayAsync(deadline.Token).ConfigureAwait(false);
                throw ErrorFromUnary(response, body);
            }
            var stream = await response.Content.ReadAsStreamAsync(deadline.Token).ConfigureAwait(false);
            deadline.Clear();
            return new ServerStream<TResponse>(method, uri, response, stream, parser, lifetime, deadline, cancellationToken);
        }
        catch (Exception ex)
        {
            response?.Dispose();
            deadline.Dispose();
            lifetime.Dispose();
            if (HttpTransport.IsTransportFailure(ex))
            {
                throw HttpTransport.Translate(ex, uri, cancellationToken, deadline, method);
            }
            throw;
        }
    }

    private HttpRequestMessage NewRequest(Uri uri, CallOptions call)
    {
        var message = new HttpRequestMessage(HttpMethod.Post, uri);
        message.Headers.TryAddWithoutValidation("Connect-Protocol-Version", "1");
        if (call.ServerTimeout is { } timeout)
        {
            message.Headers.TryAddWithoutValidation("Connect-Timeout-Ms", ((long)timeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture));
        }
        if (call.KeepAliveSeconds is { } keepAlive)
        {
            message.Headers.TryAddWithoutValidation("Keepalive-Ping-Interval", keepAlive.ToString(CultureInfo.InvariantCulture));
        }
        _endpoint.Apply(message, call.User);
        return message;
    }

    /// <summary>The error of a unary call (or of a stream refused before it started): a JSON body, else the status.</summary>
    private static ConnectException ErrorFromUnary(HttpResponseMessage response, byte[] body)
    {
        var status = (int)response.StatusCode;
        if (ParseError(body) is { } error)
        {
            error.Data["HttpStatus"] = status;
            return error;
        }
        // Not a Connect error: a proxy in front of envd answered, in E2B's REST shape {"code": 400, "message": "..."}.
        if (ProxyMessage(body) is { } message)
        {
            var code = status switch
            {
                400 => ConnectCode.InvalidArgument,
                401 => ConnectCode.Unauthenticated,
                403 => ConnectCode.PermissionDenied,
                404 => ConnectCode.NotFound,
                429 => ConnectCode.ResourceExhausted,
                _ => ConnectCodes.FromHttpStatus(status),
            };
            return new ConnectException(code, message) { Data = { ["HttpStatus"] = status } };
        }
        var text = body.Length > 0 && body.Length < 2048 ? Encoding.UTF8.GetString(body).Trim() : response.ReasonPhrase ?? "";
        return new ConnectException(ConnectCodes.FromHttpStatus(status), $"HTTP {status}{(text.Length > 0 ? ": " + text : "")}") { Data = { ["HttpStatus"] = status } };
    }

    /// <summary>The message of <c>{"code": 400, "message": "..."}</c> (E2B's REST error shape); null when the body is not that.</summary>
    private static string? ProxyMessage(ReadOnlySpan<byte> json)
    {
        if (json.IsEmpty)
        {
            return null;
        }
        try
        {
            var reader = new Utf8JsonReader(json);
            if (!JsonDocument.TryParseValue(ref reader, out var doc))
            {
                return null;
            }
            using (doc)
            {
                return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String
                    ? m.GetString()
                    : null;
            }
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Parses <c>{"code": "...", "message": "..."}</c>; null when the body is not that.</summary>
    internal static ConnectException? ParseError(ReadOnlySpan<byte> json)
    {
        if (json.IsEmpty)
        {
            return null;
        }
        try
        {
            var reader = new Utf8JsonReader(json);
            if (!JsonDocument.TryParseValue(ref reader, out var doc))
            {
                return null;
            }
            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("code", out var code) || code.ValueKind != JsonValueKind.String)
                {
                    return null;
                }
                var message = doc.RootElement.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() ?? "" : "";
                return new ConnectException(ConnectCodes.FromWire(code.GetString()), message);
            }
        }
        catch (JsonException)
        {
            return null;
        }
    }

    internal static int MaxMessage => MaxMessageBytes;
}

/// <summary>Per-call settings of a Connect call.</summary>
internal readonly record struct CallOptions(TimeSpan RequestTimeout, string? User = null, TimeSpan? ServerTimeout = null, int? KeepAliveSeconds = null);

/// <summary>
/// The response side of a server stream: messages in order, then the end. Not safe for concurrent readers.
/// Disposing it cancels the call and releases the connection.
/// </summary>
internal sealed class ServerStream<T> : IAsyncDisposable
    where T : IMessage<T>
{
    private readonly string _method;
    private readonly Uri _uri;
    private readonly HttpResponseMessage _response;
    private readonly Stream _body;
    private readonly MessageParser<T> _parser;
    private readonly CancellationTokenSource _lifetime;
    private readonly Deadline _deadline;
    private readonly CancellationToken _caller;
    private readonly byte[] _header = new byte[Envelope.HeaderSize];
    private bool _ended;
    private volatile bool _closed;

    public ServerStream(string method, Uri uri, HttpResponseMessage response, Stream body, MessageParser<T> parser, CancellationTokenSource lifetime, Deadline deadline, CancellationToken caller)
    {
        _method = method;
        _uri = uri;
        _response = response;
        _body = body;
        _parser = parser;
        _lifetime = lifetime;
        _deadline = deadline;
        _caller = caller;
    }

    /// <summary>Cancels the call: a pending read ends with <see cref="OperationCanceledException"/>.</summary>
    public void Cancel()
    {
        _closed = true;
        try
        {
            _lifetime.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // already disposed: nothing left to cancel
        }
    }

    /// <summary>
    /// The next message; null at a clean end of the stream. Throws <see cref="ConnectException"/> when the
    /// stream ended with an error, and the SDK's transport exceptions when the connection broke.
    /// </summary>
    public async ValueTask<T?> ReadAsync(CancellationToken cancellationToken = default)
    {
        if (_ended)
        {
            return default;
        }
        CancellationTokenSource linked;
        try
        {
            linked = CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token, cancellationToken);
        }
        catch (ObjectDisposedException ex)
        {
            _ended = true;
            throw new OperationCanceledException($"{_method}: the stream was closed", ex);
        }
        using var _ = linked;
        try
        {
            var got = await ReadFull(_header, linked.Token).ConfigureAwait(false);
            if (got == 0)
            {
                // A Connect stream must close with an end-of-stream message; a bare EOF is a broken stream.
                _ended = true;
                throw new ConnectException(ConnectCode.Unavailable, $"{_method}: the stream ended without an end-of-stream message (the connection was cut)");
            }
            if (got < _header.Length)
            {
                _ended = true;
                throw new ConnectException(ConnectCode.Unavailable, $"{_method}: the stream ended inside a message prefix");
            }
            var (flags, length) = Envelope.ReadHeader(_header);
            if (length > (uint)ConnectRpcClient.MaxMessage)
            {
                _ended = true;
                throw new ConnectException(ConnectCode.ResourceExhausted, $"{_method}: a message of {length} bytes is larger than the limit");
            }
            if ((flags & Envelope.CompressedFlag) != 0)
            {
                _ended = true;
                throw new ConnectException(ConnectCode.Internal, $"{_method}: the server compressed a message without negotiation");
            }
            var payload = ArrayPool<byte>.Shared.Rent((int)length);
            try
            {
                if (await ReadFull(payload.AsMemory(0, (int)length), linked.Token).ConfigureAwait(false) < length)
                {
                    _ended = true;
                    throw new ConnectException(ConnectCode.Unavailable, $"{_method}: the stream ended inside a message");
                }
                if ((flags & Envelope.EndStreamFlag) != 0)
                {
                    _ended = true;
                    ThrowIfEndError(payload.AsSpan(0, (int)length));
                    return default;
                }
                return _parser.ParseFrom(payload.AsSpan(0, (int)length));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(payload);
            }
        }
        catch (InvalidProtocolBufferException ex)
        {
            _ended = true;
            throw new SandboxException($"{_method}: the sandbox sent a malformed message: {ex.Message}", ex);
        }
        catch (ObjectDisposedException ex) when (_closed)
        {
            // Disposed by its owner while a read was pending: the same expected end as a cancellation.
            _ended = true;
            throw new OperationCanceledException($"{_method}: the stream was closed", ex);
        }
        catch (Exception ex) when (HttpTransport.IsTransportFailure(ex))
        {
            _ended = true;
            if (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested && !_caller.IsCancellationRequested)
            {
                // Disposed or cancelled by its owner: an expected end, reported as cancellation.
                throw new OperationCanceledException($"{_method}: the stream was closed", ex);
            }
            throw HttpTransport.Translate(ex, _uri, cancellationToken.IsCancellationRequested ? cancellationToken : _caller, null, _method);
        }
    }

    private void ThrowIfEndError(ReadOnlySpan<byte> json)
    {
        // {"error": {"code": "...", "message": "..."}, "metadata": {...}}; an empty object is a clean end.
        try
        {
            var reader = new Utf8JsonReader(json);
            if (!JsonDocument.TryParseValue(ref reader, out var doc))
            {
                return;
            }
            using (doc)
            {
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("error", out var error))
                {
                    var code = error.TryGetProperty("code", out var c) && c.ValueKind == JsonValueKind.String ? ConnectCodes.FromWire(c.GetString()) : ConnectCode.Unknown;
                    var message = error.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() ?? "" : "";
                    throw new ConnectException(code, message);
                }
            }
        }
        catch (JsonException ex)
        {
            throw new ConnectException(ConnectCode.Internal, $"{_method}: malformed end-of-stream message: {ex.Message}");
        }
    }

    private async ValueTask<int> ReadFull(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = await _body.ReadAsync(buffer[total..], cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                break;
            }
            total += n;
        }
        return total;
    }

    public ValueTask DisposeAsync()
    {
        _closed = true;
        Cancel();
        _body.Dispose();
        _response.Dispose();
        _deadline.Dispose();
        _lifetime.Dispose();
        return ValueTask.CompletedTask;
    }
}
