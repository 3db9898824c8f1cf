using System.IO.Pipelines;
using Microsoft.AspNetCore.Http.Features;

namespace Paddock.Daemon.Observability;

/// <summary>What a response observer is shown: each chunk written to the client, before it is written.</summary>
internal interface IResponseTap
{
    void OnWrite(ReadOnlySpan<byte> chunk);
}

/// <summary>
/// The response body of one proxied request, seen on its way to the client: bytes counted, and each chunk shown to a
/// tap (the audit's envd parser) before it goes out, so an event is recorded before the client can read it.
/// Everything else is the original feature's (start, completion, buffering, upgrades).
/// </summary>
internal sealed class ObservedResponseBody(IHttpResponseBodyFeature inner, IResponseTap? tap) : Stream, IHttpResponseBodyFeature
{
    private PipeWriter? _writer;

    public long BytesWritten { get; private set; }

    public Stream Stream => this;

    public PipeWriter Writer => _writer ??= PipeWriter.Create(this, new StreamPipeWriterOptions(leaveOpen: true));

    public void DisableBuffering() => inner.DisableBuffering();

    public Task StartAsync(CancellationToken cancellationToken = default) => inner.StartAsync(cancellationToken);

    public async Task CompleteAsync()
    {
        if (_writer is not null)
        {
            await _writer.FlushAsync();
        }
        await inner.CompleteAsync();
    }

    public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) =>
        SendFileFallback.SendFileAsync(this, path, offset, count, cancellationToken);

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        tap?.OnWrite(buffer.Span);
        BytesWritten += buffer.Length;
        await inner.Stream.WriteAsync(buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        tap?.OnWrite(buffer.AsSpan(offset, count));
        BytesWritten += count;
        inner.Stream.Write(buffer, offset, count);
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.Stream.FlushAsync(cancellationToken);

    public override void Flush() => inner.Stream.Flush();

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}

/// <summary>A request body that counts what the proxy reads from it.</summary>
internal sealed class CountingRequestBody(Stream inner) : ReadOnlyForwardStream
{
    public long BytesRead { get; private set; }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var n = await inner.ReadAsync(buffer, cancellationToken);
        BytesRead += n;
        return n;
    }

    public override int Read(byte[] buffer, int offset, int count)
    {
        var n = inner.Read(buffer, offset, count);
        BytesRead += n;
        return n;
    }
}
