using System.Buffers;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Google.Protobuf;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Bench.Agent;

/// <summary>What a process run through the agent's Start stream came to.</summary>
internal readonly record struct RunOutcome(int ExitCode, long StdoutBytes, long StderrBytes, int DataEvents);

/// <summary>
/// A minimal envd client for the bench: Connect server streams over one HTTP/1.1 keep-alive connection, and
/// <c>/files</c>. Written against the wire (Connect protocol, envd.yaml) rather than any SDK, so what it measures is
/// the agent plus one loopback hop.
/// </summary>
internal sealed class EnvdClient : IDisposable
{
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default);

    private readonly HttpClient _http;

    /// <param name="baseAddress">The agent, or paddockd's proxy.</param>
    /// <param name="headers">Headers sent with every request: through paddockd's proxy, the ones that pick the sandbox
    /// and port (<c>E2b-Sandbox-Id</c>, <c>E2b-Sandbox-Port</c>) and its <c>X-Access-Token</c>.</param>
    public EnvdClient(Uri baseAddress, IReadOnlyDictionary<string, string>? headers = null)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(10),
            // One connection, reused: the round trip is measured on a warm keep-alive connection.
            MaxConnectionsPerServer = 1,
        };
        _http = new HttpClient(handler)
        {
            BaseAddress = baseAddress,
            DefaultRequestVersion = HttpVersion.Version11,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = Timeout.InfiniteTimeSpan,
        };
        foreach (var (name, value) in headers ?? new Dictionary<string, string>())
        {
            _http.DefaultRequestHeaders.TryAddWithoutValidation(name, value);
        }
    }

    /// <summary>
    /// Runs <paramref name="request"/> through <c>process.Process/Start</c> and reads the stream to its end; as
    /// <paramref name="user"/> (<c>Authorization: Basic base64(user:)</c>, as E2B's SDKs send it) when given.
    /// </summary>
    public async Task<RunOutcome> RunAsync(StartRequest request, bool json, CancellationToken cancellationToken, string? user = null)
    {
        var payload = json ? Encoding.UTF8.GetBytes(Formatter.Format(request)) : request.ToByteArray();
        var body = new byte[Envelope.HeaderSize + payload.Length];
        Envelope.WriteHeader(body, 0, payload.Length);
        payload.CopyTo(body, Envelope.HeaderSize);

        using var message = new HttpRequestMessage(HttpMethod.Post, "/process.Process/Start") { Content = new ByteArrayContent(body) };
        message.Content.Headers.ContentType = new MediaTypeHeaderValue(json ? "application/connect+json" : "application/connect+proto");
        message.Headers.TryAddWithoutValidation("Connect-Protocol-Version", "1");
        if (user is not null)
        {
            message.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":")));
        }
        using var response = await _http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new HttpRequestException($"Start answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);

        var header = new byte[Envelope.HeaderSize];
        var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            long stdout = 0, stderr = 0;
            var dataEvents = 0;
            int? exitCode = null;
            while (true)
            {
                await stream.ReadExactlyAsync(header, cancellationToken);
                var (flags, length) = Envelope.ReadHeader(header);
                if (length > buffer.Length)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = ArrayPool<byte>.Shared.Rent((int)length);
                }
                var frame = buffer.AsMemory(0, (int)length);
                await stream.ReadExactlyAsync(frame, cancellationToken);
                if ((flags & Envelope.EndStreamFlag) != 0)
                {
                    var end = Encoding.UTF8.GetString(frame.Span);
                    if (end.Contains("\"error\"", StringComparison.Ordinal))
                    {
                        throw new HttpRequestException($"Start ended with an error: {end}");
                    }
                    return exitCode is { } code
                        ? new RunOutcome(code, stdout, stderr, dataEvents)
                        : throw new InvalidDataException("the Start stream ended without an end event");
                }
                if (json ? DataEventJson.TryRead(frame.Span, out var outBytes, out var errBytes, out _) : DataEventWire.TryRead(frame.Span, out outBytes, out errBytes, out _))
                {
                    dataEvents++;
                    stdout += outBytes;
                    stderr += errBytes;
                    continue;
                }
                var evt = (json
                    ? (StartResponse)Parser.Parse(Encoding.UTF8.GetString(frame.Span), StartResponse.Descriptor)
                    : StartResponse.Parser.ParseFrom(frame.Span)).Event;
                switch (evt?.EventCase)
                {
                    case ProcessEvent.EventOneofCase.Data:
                        dataEvents++;
                        stdout += evt.Data.Stdout.Length;
                        stderr += evt.Data.Stderr.Length;
                        break;
                    case ProcessEvent.EventOneofCase.End:
                        exitCode = evt.End.ExitCode;
                        break;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// <c>POST /files?path=</c>: the body streams from <paramref name="localPath"/>, either as
    /// <c>application/octet-stream</c> or as the one-part <c>multipart/form-data</c> the SDK sends by default.
    /// </summary>
    public async Task UploadAsync(string localPath, string remotePath, bool multipart, CancellationToken cancellationToken)
    {
        await using var file = new FileStream(localPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        var content = new StreamContent(file, 256 * 1024);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using HttpContent body = multipart ? new MultipartFormDataContent { { content, "file", remotePath } } : content;
        using var response = await _http.PostAsync($"/files?path={Uri.EscapeDataString(remotePath)}", body, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"POST /files answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }
    }

    /// <summary><c>GET /files?path=</c>, written to <paramref name="localPath"/> as a client saving a download would.</summary>
    public async Task<long> DownloadAsync(string remotePath, string localPath, CancellationToken cancellationToken)
    {
        using var response = await _http.GetAsync($"/files?path={Uri.EscapeDataString(remotePath)}", HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"GET /files answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }
        await using var source = await response.Content.ReadAsStreamAsync(cancellationToken);
        using var file = File.OpenHandle(localPath, FileMode.Create, FileAccess.Write);
        // Large reads straight from the socket and synchronous writes into the page cache, as cp does: FileStream's
        // asynchronous writes would add a thread-pool hand-over per write to the client's side of the figure.
        var buffer = ArrayPool<byte>.Shared.Rent(1024 * 1024);
        try
        {
            long written = 0;
            int read;
            while ((read = await source.ReadAsync(buffer, cancellationToken)) > 0)
            {
                RandomAccess.Write(file, buffer.AsSpan(0, read), written);
                written += read;
            }
            return written;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public void Dispose() => _http.Dispose();
}
