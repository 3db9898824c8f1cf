using System.Buffers;
using System.IO.Compression;
using System.Text;
using Google.Protobuf;
using Microsoft.AspNetCore.Http.Features;
using Paddock.Agent.Hosting;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Connect;

/// <summary>
/// Serves Connect RPC (connectrpc.com/docs/protocol) over the agent's routes (<see cref="AgentRoutes"/>): unary calls in
/// <c>application/proto</c> and <c>application/json</c>, streams in <c>application/connect+proto</c> and
/// <c>application/connect+json</c>, over HTTP/1.1 and h2c alike. Handlers see typed messages and throw
/// <see cref="ConnectException"/> for errors the caller should see.
/// </summary>
internal static class ConnectEndpoints
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(false));

    // Unknown JSON fields are skipped, as connect-go's protojson codec does, so newer clients keep working.
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    public static void MapConnectUnary<TRequest, TResponse>(this AgentRoutes app, string service, string method, UnaryHandler<TRequest, TResponse> handler)
        where TRequest : IMessage<TRequest>, new()
        where TResponse : IMessage<TResponse>
    {
        var options = app.Services.ConnectOptions;
        var users = app.Services.Users;
        app.MapPost($"/{service}/{method}", async http =>
        {
            var codec = UnaryCodec(http.Request.ContentType);
            if (codec is null)
            {
                await WriteUnsupportedMediaType(http);
                return;
            }
            try
            {
                using var deadline = Deadline(http);
                var user = users.Resolve(BasicAuthUser(http));
                var payload = await ReadUnaryBody(http, options.MaxMessageBytes, deadline.Token);
                var request = Decode<TRequest>(payload, codec.Value);
                var response = await handler(request, new ConnectCallContext(http, user, KeepAlive(http), deadline.Token));
                http.Response.StatusCode = StatusCodes.Status200OK;
                http.Response.ContentType = codec == Codec.Json ? "application/json" : "application/proto";
                var bytes = Encode(response, codec.Value);
                http.Response.ContentLength = bytes.Length;
                await http.Response.Body.WriteAsync(bytes, http.RequestAborted);
            }
            catch (Exception ex) when (ToConnectError(ex, http) is { } error)
            {
                if (http.Response.HasStarted)
                {
                    http.Abort();
                    return;
                }
                http.Response.StatusCode = error.Code.ToHttpStatus();
                http.Response.ContentType = "application/json";
                await http.Response.WriteAsync(ErrorJson(error), CancellationToken.None);
            }
        });
    }

    public static void MapConnectServerStream<TRequest, TResponse>(this AgentRoutes app, string service, string method, ServerStreamHandler<TRequest, TResponse> handler)
        where TRequest : IMessage<TRequest>, new()
        where TResponse : IMessage<TResponse>
    {
        var options = app.Services.ConnectOptions;
        var users = app.Services.Users;
        app.MapPost($"/{service}/{method}", async http =>
        {
            var codec = StreamCodec(http.Request.ContentType);
            if (codec is null)
            {
                await WriteUnsupportedMediaType(http);
                return;
            }
            var writer = StartStream<TResponse>(http, codec.Value);
            ConnectException? failure = null;
            try
            {
                using var deadline = Deadline(http);
                var user = users.Resolve(BasicAuthUser(http));
                var body = RequestBody(http, streaming: true);
                var first = await ReadEnvelope(body, options.MaxMessageBytes, deadline.Token)
                    ?? throw new ConnectException(ConnectCode.InvalidArgument, "the stream carried no request message");
                var request = Decode<TRequest>(first, codec.Value);
                await handler(request, writer, new ConnectCallContext(http, user, KeepAlive(http), deadline.Token));
            }
            catch (Exception ex) when (ToConnectError(ex, http) is { } error)
            {
                failure = error;
            }
            await writer.EndAsync(failure);
        });
    }

    public static void MapConnectClientStream<TRequest, TResponse>(this AgentRoutes app, string service, string method, ClientStreamHandler<TRequest, TResponse> handler)
        where TRequest : IMessage<TRequest>, new()
        where TResponse : IMessage<TResponse>
    {
        var options = app.Services.ConnectOptions;
        var users = app.Services.Users;
        app.MapPost($"/{service}/{method}", async http =>
        {
            var codec = StreamCodec(http.Request.ContentType);
            if (codec is null)
            {
                await WriteUnsupportedMediaType(http);
                return;
            }
            var writer = StartStream<TResponse>(http, codec.Value);
            ConnectException? failure = null;
            try
            {
                using var deadline = Deadline(http);
                var user = users.Resolve(BasicAuthUser(http));
                var body = RequestBody(http, streaming: true);
                var response = await handler(ReadAll<TRequest>(body, codec.Value, options.MaxMessageBytes, deadline.Token), new ConnectCallContext(http, user, KeepAlive(http), deadline.Token));
                await writer.WriteFinalAsync(response, deadline.Token);
            }
            catch (Exception ex) when (ToConnectError(ex, http) is { } error)
            {
                failure = error;
            }
            await writer.EndAsync(failure);
        });
    }

    private enum Codec
    {
        Proto,
        Json,
    }

    private static Codec? UnaryCodec(string? contentType) => MediaType(contentType) switch
    {
        "application/proto" => Codec.Proto,
        "application/json" => Codec.Json,
        _ => null,
    };

    private static Codec? StreamCodec(string? contentType) => MediaType(contentType) switch
    {
        "application/connect+proto" => Codec.Proto,
        "application/connect+json" => Codec.Json,
        _ => null,
    };

    private static string MediaType(string? contentType)
    {
        if (string.IsNullOrEmpty(contentType))
        {
            return "";
        }
        var semicolon = contentType.IndexOf(';', StringComparison.Ordinal);
        return (semicolon < 0 ? contentType : contentType[..semicolon]).Trim().ToLowerInvariant();
    }

    private static Task WriteUnsupportedMediaType(HttpContext http)
    {
        // Connect: a server that does not speak the content type answers 415 so the client can tell it is not Connect.
        http.Response.StatusCode = StatusCodes.Status415UnsupportedMediaType;
        http.Response.Headers.Accept = "application/proto, application/json, application/connect+proto, application/connect+json";
        return http.Response.WriteAsync($"unsupported content type '{http.Request.ContentType}'");
    }

    private static CancellationTokenSource Deadline(HttpContext http)
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
        if (http.Request.Headers.TryGetValue("Connect-Timeout-Ms", out var value))
        {
            if (!long.TryParse(value, out var ms) || ms <= 0 || ms > 9_999_999_999)
            {
                cts.Dispose();
                throw new ConnectException(ConnectCode.InvalidArgument, $"invalid Connect-Timeout-Ms header '{value}'");
            }
            cts.CancelAfter(TimeSpan.FromMilliseconds(Math.Min(ms, int.MaxValue)));
        }
        return cts;
    }

    private static TimeSpan KeepAlive(HttpContext http)
    {
        if (http.Request.Headers.TryGetValue("Keepalive-Ping-Interval", out var value) && int.TryParse(value, out var seconds) && seconds > 0)
        {
            return TimeSpan.FromSeconds(Math.Min(seconds, 3600));
        }
        return TimeSpan.FromSeconds(50);
    }

    /// <summary>The user named by <c>Authorization: Basic base64(user:)</c>, as E2B's SDKs send it.</summary>
    internal static string? BasicAuthUser(HttpContext http)
    {
        var header = http.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        try
        {
            var decoded = Encoding.UTF8.GetString(Convert.FromBase64String(header[6..].Trim()));
            var colon = decoded.IndexOf(':', StringComparison.Ordinal);
            return colon < 0 ? decoded : decoded[..colon];
        }
        catch (FormatException)
        {
            throw new ConnectException(ConnectCode.Unauthenticated, "malformed Authorization header: Basic credentials are not base64");
        }
    }

    private static Stream RequestBody(HttpContext http, bool streaming)
    {
        var header = streaming ? "Connect-Content-Encoding" : "Content-Encoding";
        var encoding = http.Request.Headers[header].ToString();
        return encoding switch
        {
            "" or "identity" => http.Request.Body,
            "gzip" => new GZipStream(http.Request.Body, CompressionMode.Decompress, leaveOpen: true),
            _ => throw new ConnectException(ConnectCode.Unimplemented, $"unsupported compression '{encoding}': only gzip and identity are accepted"),
        };
    }

    private static async Task<byte[]> ReadUnaryBody(HttpContext http, int maxBytes, CancellationToken cancellationToken)
    {
        if (http.Request.ContentLength > maxBytes)
        {
            throw TooLarge(http.Request.ContentLength.Value, maxBytes);
        }
        var body = RequestBody(http, streaming: false);
        using var buffer = new MemoryStream();
        var chunk = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            int read;
            while ((read = await body.ReadAsync(chunk, cancellationToken)) > 0)
            {
                if (buffer.Length + read > maxBytes)
                {
                    throw TooLarge(buffer.Length + read, maxBytes);
                }
                buffer.Write(chunk, 0, read);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
        return buffer.ToArray();
    }

    private static ConnectException TooLarge(long size, int maxBytes) =>
        new(ConnectCode.ResourceExhausted, $"message of {size} bytes is larger than the limit of {maxBytes} bytes");

    /// <summary>Reads one enveloped message; null at a clean end of the body.</summary>
    private static async Task<byte[]?> ReadEnvelope(Stream body, int maxBytes, CancellationToken cancellationToken)
    {
        var header = new byte[Envelope.HeaderSize];
        var got = await ReadFull(body, header, cancellationToken);
        if (got == 0)
        {
            return null;
        }
        if (got < header.Length)
        {
            throw new ConnectException(ConnectCode.InvalidArgument, "truncated envelope: the body ended inside a message prefix");
        }
        var (flags, length) = Envelope.ReadHeader(header);
        if ((flags & Envelope.CompressedFlag) != 0)
        {
            throw new ConnectException(ConnectCode.Internal, "compressed message without a negotiated Connect-Content-Encoding");
        }
        if ((flags & ~(Envelope.CompressedFlag | Envelope.EndStreamFlag)) != 0)
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"invalid envelope flags 0x{flags:x2}");
        }
        if (length > (uint)maxBytes)
        {
            throw TooLarge(length, maxBytes);
        }
        var payload = new byte[length];
        if (await ReadFull(body, payload, cancellationToken) < payload.Length)
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"truncated envelope: expected {length} bytes of message");
        }
        return (flags & Envelope.EndStreamFlag) != 0 ? null : payload;
    }

    private static async Task<int> ReadFull(Stream body, byte[] buffer, CancellationToken cancellationToken)
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

    private static async IAsyncEnumerable<TRequest> ReadAll<TRequest>(Stream body, Codec codec, int maxBytes, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
        where TRequest : IMessage<TRequest>, new()
    {
        while (await ReadEnvelope(body, maxBytes, cancellationToken) is { } payload)
        {
            yield return Decode<TRequest>(payload, codec);
        }
    }

    private static TRequest Decode<TRequest>(byte[] payload, Codec codec)
        where TRequest : IMessage<TRequest>, new()
    {
        try
        {
            if (codec == Codec.Proto)
            {
                var message = new TRequest();
                message.MergeFrom(payload);
                return message;
            }
            var json = Encoding.UTF8.GetString(payload);
            return (TRequest)Parser.Parse(json, new TRequest().Descriptor);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"malformed {typeof(TRequest).Name}: {ex.Message}");
        }
        catch (InvalidJsonException ex)
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"malformed {typeof(TRequest).Name} JSON: {ex.Message}");
        }
        catch (FormatException ex)
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"malformed {typeof(TRequest).Name}: {ex.Message}");
        }
    }

    private static byte[] Encode(IMessage message, Codec codec) =>
        codec == Codec.Proto ? message.ToByteArray() : Encoding.UTF8.GetBytes(Formatter.Format(message));

    private static ConnectException? ToConnectError(Exception ex, HttpContext http) => ex switch
    {
        ConnectException c => c,
        OperationCanceledException when http.RequestAborted.IsCancellationRequested => new ConnectException(ConnectCode.Canceled, "the client cancelled the call"),
        OperationCanceledException => new ConnectException(ConnectCode.DeadlineExceeded, "the call's deadline (Connect-Timeout-Ms) passed"),
        BadHttpRequestException b => new ConnectException(ConnectCode.InvalidArgument, b.Message),
        IOException when http.RequestAborted.IsCancellationRequested => new ConnectException(ConnectCode.Canceled, "the client went away"),
        _ => null,
    };

    private static string ErrorJson(ConnectException error)
    {
        using var stream = new MemoryStream();
        using (var json = new System.Text.Json.Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteString("code", error.Code.ToWire());
            json.WriteString("message", error.Message);
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static StreamWriter<TResponse> StartStream<TResponse>(HttpContext http, Codec codec)
        where TResponse : IMessage<TResponse>
    {
        // Streams always answer 200: errors travel in the end-of-stream message.
        http.Response.StatusCode = StatusCodes.Status200OK;
        http.Response.ContentType = codec == Codec.Json ? "application/connect+json" : "application/connect+proto";
        http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        return new StreamWriter<TResponse>(http, codec);
    }

    private sealed class StreamWriter<T> : IStreamWriter<T>
        where T : IMessage<T>
    {
        private readonly HttpContext _http;
        private readonly Codec _codec;
        private readonly SemaphoreSlim _gate = new(1, 1);
        private bool _ended;

        public StreamWriter(HttpContext http, Codec codec)
        {
            _http = http;
            _codec = codec;
        }

        public bool IsJson => _codec == Codec.Json;

        public async ValueTask WriteEncodedAsync<TState>(int length, SpanAction<byte, TState> encode, TState state, CancellationToken cancellationToken)
        {
            await _gate.WaitAsync(cancellationToken);
            try
            {
                if (_ended)
                {
                    throw new InvalidOperationException("the stream has ended");
                }
                var body = _http.Response.BodyWriter;
                Envelope.WriteHeader(body.GetSpan(Envelope.HeaderSize), 0, length);
                body.Advance(Envelope.HeaderSize);
                var span = body.GetSpan(length);
                if (span.Length >= length)
                {
                    encode(span[..length], state);
                    body.Advance(length);
                }
                else
                {
                    // A writer that cannot lend one span this large: encode aside and copy.
                    var buffer = ArrayPool<byte>.Shared.Rent(length);
                    try
                    {
                        encode(buffer.AsSpan(0, length), state);
                        body.Write(buffer.AsSpan(0, length));
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                    }
                }
                await body.FlushAsync(cancellationToken);
            }
            finally
            {
                _gate.Release();
            }
        }

        public ValueTask WriteAsync(T message, CancellationToken cancellationToken) => WriteAsync(message, flush: true, cancellationToken);

        public ValueTask WriteFinalAsync(T message, CancellationToken cancellationToken) => WriteAsync(message, flush: false, cancellationToken);

        private async ValueTask WriteAsync(T message, bool flush, CancellationToken cancellationToken)
        {
            await _gate.WaitAsync(cancellationToken);
            try
            {
                if (_ended)
                {
                    throw new InvalidOperationException("the stream has ended");
                }
                var body = _http.Response.BodyWriter;
                if (_codec == Codec.Proto)
                {
                    // Envelope and message encoded straight into the response pipe: no intermediate array (a
                    // process's output stream is mostly large data messages; this saves an allocation and a copy of each).
                    Envelope.WriteHeader(body.GetSpan(Envelope.HeaderSize), 0, message.CalculateSize());
                    body.Advance(Envelope.HeaderSize);
                    message.WriteTo(body);
                }
                else
                {
                    WriteFrame(body, 0, Encode(message, _codec));
                }
                if (flush)
                {
                    await body.FlushAsync(cancellationToken);
                }
            }
            finally
            {
                _gate.Release();
            }
        }

        public async Task EndAsync(ConnectException? error)
        {
            await _gate.WaitAsync();
            try
            {
                if (_ended)
                {
                    return;
                }
                _ended = true;
                if (_http.RequestAborted.IsCancellationRequested)
                {
                    return;
                }
                var json = error is null ? "{}" : "{\"error\":" + ErrorJson(error) + "}";
                // Not flushed here: the response ends right after this, and Kestrel sends what is left together
                // with the end of the chunked body, one write for the last messages and the terminator.
                WriteFrame(_http.Response.BodyWriter, Envelope.EndStreamFlag, Encoding.UTF8.GetBytes(json));
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException)
            {
                // The client left before the end of the stream: nothing is left to tell it.
            }
            finally
            {
                _gate.Release();
            }
        }

        private static void WriteFrame(System.IO.Pipelines.PipeWriter body, byte flags, byte[] payload)
        {
            Envelope.WriteHeader(body.GetSpan(Envelope.HeaderSize), flags, payload.Length);
            body.Advance(Envelope.HeaderSize);
            body.Write(payload);
        }
    }
}

/// <summary>Limits of the Connect server.</summary>
internal sealed record ConnectServerOptions
{
    /// <summary>The largest request message accepted, in bytes; larger ones fail with resource_exhausted.</summary>
    public int MaxMessageBytes { get; init; } = 32 * 1024 * 1024;
}
