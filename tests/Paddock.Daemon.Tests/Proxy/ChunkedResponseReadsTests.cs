using System.Net;
using System.Text;
using Paddock.Daemon.Proxy;

namespace Paddock.Daemon.Tests.Proxy;

public sealed class ChunkedResponseReadsTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Zero_byte_reads_pass_through_unless_the_last_read_was_large()
    {
        var inner = new CountingStream(new MemoryStream(new byte[3 * ChunkedResponseReads.FloodRead + 10]));
        await using var stream = new ChunkedResponseReads.FloodStream(inner);
        var buffer = new byte[64 * 1024];

        // Nothing read yet: the caller's zero-byte read reaches the response stream (an idle stream holds no buffer).
        Assert.Equal(0, await stream.ReadAsync(Memory<byte>.Empty).AsTask().WaitAsync(Wait));
        Assert.Equal(1, inner.ZeroByteReads);

        // A large read: the next zero-byte read completes at once, once.
        Assert.Equal(ChunkedResponseReads.FloodRead, await stream.ReadAsync(buffer.AsMemory(0, ChunkedResponseReads.FloodRead)).AsTask().WaitAsync(Wait));
        Assert.Equal(0, await stream.ReadAsync(Memory<byte>.Empty).AsTask().WaitAsync(Wait));
        Assert.Equal(1, inner.ZeroByteReads);
        Assert.Equal(0, await stream.ReadAsync(Memory<byte>.Empty).AsTask().WaitAsync(Wait));
        Assert.Equal(2, inner.ZeroByteReads);

        // A small read: zero-byte reads pass through again; the data comes out whole.
        Assert.Equal(10, await stream.ReadAsync(buffer.AsMemory(0, 10)).AsTask().WaitAsync(Wait));
        Assert.Equal(0, await stream.ReadAsync(Memory<byte>.Empty).AsTask().WaitAsync(Wait));
        Assert.Equal(3, inner.ZeroByteReads);
        Assert.Equal(2 * ChunkedResponseReads.FloodRead, await stream.ReadAsync(buffer).AsTask().WaitAsync(Wait));
        Assert.Equal(0, await stream.ReadAsync(buffer).AsTask().WaitAsync(Wait));
    }

    [Fact]
    public async Task Only_chunked_responses_are_wrapped_and_keep_their_content_headers()
    {
        using var chunked = new HttpMessageInvoker(new ChunkedResponseReads(new Answer(chunked: true)));
        using var response = await chunked.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://x/"), CancellationToken.None).WaitAsync(Wait);
        Assert.Equal("application/connect+json", response.Content.Headers.ContentType?.MediaType);
        await using (var body = await response.Content.ReadAsStreamAsync().WaitAsync(Wait))
        {
            Assert.IsType<ChunkedResponseReads.FloodStream>(body);
            using var reader = new StreamReader(body);
            Assert.Equal("output", await reader.ReadToEndAsync().WaitAsync(Wait));
        }

        using var plain = new HttpMessageInvoker(new ChunkedResponseReads(new Answer(chunked: false)));
        using var other = await plain.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://x/"), CancellationToken.None).WaitAsync(Wait);
        Assert.IsType<StringContent>(other.Content);
    }

    private sealed class Answer(bool chunked) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent("output", Encoding.UTF8, "application/connect+json") };
            response.Headers.TransferEncodingChunked = chunked;
            return Task.FromResult(response);
        }
    }

    private sealed class CountingStream(Stream inner) : Daemon.Observability.ReadOnlyForwardStream
    {
        public int ZeroByteReads { get; private set; }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (buffer.IsEmpty)
            {
                ZeroByteReads++;
            }
            return inner.ReadAsync(buffer, cancellationToken);
        }

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
    }
}
