using System.Net;

namespace Paddock.Daemon.Proxy;

/// <summary>
/// Lets a chunked response from a sandbox (a command's output stream, Connect server streams) be copied in large reads
/// while it floods, by answering the forwarder's zero-byte reads at once while data is flowing.
/// </summary>
/// <remarks>
/// YARP's copier issues a zero-byte read before every read, so that an idle stream holds no buffer. SocketsHttpHandler's
/// chunked response stream answers a zero-byte read by filling its connection buffer (4 KiB), and the next read then
/// returns just those 4 KiB: every copy step moved 4 KiB, with a recv, a 1-byte MSG_PEEK and a chunked write to the
/// client each. Measured with <c>bench/run agent --through-daemon</c> (2026-12-07, strace of paddockd during `head -c
/// 512M /dev/zero` through Start): 4096-byte recvs and "1000\r\n" (4 KiB) chunks out, 3.2 ms of paddockd's CPU per
/// MiB, against 1.5 ms for a download (Content-Length, whose reads go straight into the copier's 64 KiB buffer). Here,
/// after a read that returned at least <see cref="FloodRead"/> bytes, the next zero-byte read completes at once, so the
/// next read goes straight from the socket into the copier's buffer; after a smaller read (interactive output, a
/// stream going quiet) zero-byte reads pass through as before, and an idle stream still holds no buffer.
/// </remarks>
internal sealed class ChunkedResponseReads(HttpMessageHandler inner) : DelegatingHandler(inner)
{
    /// <summary>SocketsHttpHandler's HTTP/1.1 read buffer: a read this large means more data was waiting behind it.</summary>
    internal const int FloodRead = 4096;

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken);
        // Only a chunked body: an upgraded connection (101) is a duplex stream the forwarder writes to, and a body with
        // a Content-Length is read straight into the caller's buffer already.
        if (response.StatusCode != HttpStatusCode.SwitchingProtocols && response.Headers.TransferEncodingChunked == true)
        {
            response.Content = new Content(response.Content);
        }
        return response;
    }

    /// <summary>The original content, its headers carried over, read through <see cref="FloodStream"/>.</summary>
    private sealed class Content : HttpContent
    {
        private readonly HttpContent _inner;

        public Content(HttpContent inner)
        {
            _inner = inner;
            foreach (var header in inner.Headers)
            {
                Headers.TryAddWithoutValidation(header.Key, header.Value);
            }
        }

        protected override async Task<Stream> CreateContentReadStreamAsync(CancellationToken cancellationToken) =>
            new FloodStream(await _inner.ReadAsStreamAsync(cancellationToken));

        protected override async Task<Stream> CreateContentReadStreamAsync() => new FloodStream(await _inner.ReadAsStreamAsync());

        protected override Stream CreateContentReadStream(CancellationToken cancellationToken) => new FloodStream(_inner.ReadAsStream(cancellationToken));

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => _inner.CopyToAsync(stream, context);

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken) =>
            _inner.CopyToAsync(stream, context, cancellationToken);

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _inner.Dispose();
            }
            base.Dispose(disposing);
        }
    }

    /// <summary>A read-only stream over the response body whose zero-byte reads complete at once while it floods.</summary>
    internal sealed class FloodStream(Stream inner) : Observability.ReadOnlyForwardStream
    {
        private bool _flooding;

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (buffer.IsEmpty && _flooding)
            {
                // Data was flowing: the caller's real read comes next and will find it (or wait for it, as it would anyway).
                _flooding = false;
                return ValueTask.FromResult(0);
            }
            var read = inner.ReadAsync(buffer, cancellationToken);
            if (buffer.IsEmpty)
            {
                return read;
            }
            if (read.IsCompletedSuccessfully)
            {
                var n = read.Result;
                _flooding = n >= FloodRead;
                return ValueTask.FromResult(n);
            }
            return Awaited(read);
        }

        private async ValueTask<int> Awaited(ValueTask<int> read)
        {
            var n = await read;
            _flooding = n >= FloodRead;
            return n;
        }

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

        public override int Read(Span<byte> buffer) => inner.Read(buffer);

        public override Task CopyToAsync(Stream destination, int bufferSize, CancellationToken cancellationToken) =>
            inner.CopyToAsync(destination, bufferSize, cancellationToken);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }
            base.Dispose(disposing);
        }

        public override ValueTask DisposeAsync()
        {
            GC.SuppressFinalize(this);
            return inner.DisposeAsync();
        }
    }
}
