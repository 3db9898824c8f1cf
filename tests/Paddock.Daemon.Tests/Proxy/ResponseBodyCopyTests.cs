using System.Threading.Channels;
using Paddock.Daemon.Proxy;
using Yarp.ReverseProxy.Forwarder;

namespace Paddock.Daemon.Tests.Proxy;

/// <summary>The proxy's own response copy: what it gathers, what it never holds back, how it ends.</summary>
public sealed class ResponseBodyCopyTests
{
    private static readonly TimeSpan Activity = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Data_that_is_waiting_is_gathered_into_few_large_writes()
    {
        // 64 reads of 16 KiB, all ready at once: one MiB that fits one large buffer.
        var source = new ScriptedSource();
        var expected = new byte[64 * 16 * 1024];
        new Random(3).NextBytes(expected);
        for (var i = 0; i < 64; i++)
        {
            source.Ready(expected.AsMemory(i * 16 * 1024, 16 * 1024));
        }
        source.End();
        var destination = new RecordingDestination();

        var (error, exception) = await ResponseBodyCopy.CopyAsync(source, destination, Activity, new ResponseBodyCopy.Buffers(1), CancellationToken.None).AsTask().WaitAsync(Wait);

        Assert.Equal(ForwarderError.None, error);
        Assert.Null(exception);
        Assert.Equal(expected, destination.Bytes);
        // YARP's copier wrote 64 times here; the buffer is 1 MiB, so the body goes in at most two writes.
        Assert.InRange(destination.Writes, 1, 2);
        Assert.Equal(ResponseBodyCopy.LargeBuffer, source.LargestRead);
    }

    [Fact]
    public async Task What_was_gathered_goes_out_while_the_next_read_waits()
    {
        var source = new ScriptedSource();
        source.Ready(new byte[32 * 1024]);
        source.Ready(new byte[32 * 1024]);
        var destination = new RecordingDestination();
        var copy = ResponseBodyCopy.CopyAsync(source, destination, Activity, new ResponseBodyCopy.Buffers(1), CancellationToken.None).AsTask();

        // The source has nothing more and does not end: both reads' bytes must reach the client now.
        await destination.WaitForBytesAsync(64 * 1024).WaitAsync(Wait);
        Assert.False(copy.IsCompleted);

        source.Ready(new byte[100]);
        await destination.WaitForBytesAsync(64 * 1024 + 100).WaitAsync(Wait);
        source.End();
        Assert.Equal(ForwarderError.None, (await copy.WaitAsync(Wait)).Error);
    }

    [Fact]
    public async Task A_small_read_is_written_at_once_and_the_body_then_waits_without_a_buffer()
    {
        var source = new ScriptedSource();
        source.Ready("$ ls\n"u8.ToArray());
        var destination = new RecordingDestination();
        var copy = ResponseBodyCopy.CopyAsync(source, destination, Activity, new ResponseBodyCopy.Buffers(1), CancellationToken.None).AsTask();

        await destination.WaitForBytesAsync(5).WaitAsync(Wait);
        // Interactive output waits with a zero-byte read: no buffer held while it idles.
        await source.WaitForZeroByteReadsAsync(2).WaitAsync(Wait);
        source.End();
        Assert.Equal(ForwarderError.None, (await copy.WaitAsync(Wait)).Error);
        Assert.Equal("$ ls\n"u8.ToArray(), destination.Bytes);
    }

    [Fact]
    public async Task Bodies_past_the_budget_of_large_buffers_copy_with_small_ones()
    {
        var buffers = new ResponseBodyCopy.Buffers(1);
        // The first body floods, then waits holding its large buffer (the budget's one).
        var first = new ScriptedSource();
        first.Ready(new byte[32 * 1024]);
        var firstDestination = new RecordingDestination();
        var firstCopy = ResponseBodyCopy.CopyAsync(first, firstDestination, Activity, buffers, CancellationToken.None).AsTask();
        await firstDestination.WaitForBytesAsync(32 * 1024).WaitAsync(Wait);

        var second = new ScriptedSource();
        second.Ready(new byte[200 * 1024]);
        second.End();
        var secondDestination = new RecordingDestination();
        Assert.Equal(ForwarderError.None, (await ResponseBodyCopy.CopyAsync(second, secondDestination, Activity, buffers, CancellationToken.None).AsTask().WaitAsync(Wait)).Error);
        Assert.Equal(ResponseBodyCopy.SmallBuffer, second.LargestRead);
        Assert.Equal(200 * 1024, secondDestination.Bytes.Length);

        first.End();
        Assert.Equal(ForwarderError.None, (await firstCopy.WaitAsync(Wait)).Error);
        // The first body's buffer is back: a third gets a large one again.
        var third = new ScriptedSource();
        third.Ready(new byte[10]);
        third.End();
        await ResponseBodyCopy.CopyAsync(third, new RecordingDestination(), Activity, buffers, CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.Equal(ResponseBodyCopy.LargeBuffer, third.LargestRead);
    }

    [Fact]
    public async Task A_failed_read_is_the_sandboxs_error_and_a_failed_write_the_clients()
    {
        var source = new ScriptedSource();
        source.Ready(new byte[10]);
        source.Fail(new IOException("sandbox connection reset"));
        var (readError, readException) = await ResponseBodyCopy.CopyAsync(source, new RecordingDestination(), Activity, new ResponseBodyCopy.Buffers(1), CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.Equal(ForwarderError.ResponseBodyDestination, readError);
        Assert.IsType<IOException>(readException);

        var healthy = new ScriptedSource();
        healthy.Ready(new byte[10]);
        var (writeError, writeException) = await ResponseBodyCopy.CopyAsync(healthy, new RecordingDestination(fail: true), Activity, new ResponseBodyCopy.Buffers(1), CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.Equal(ForwarderError.ResponseBodyClient, writeError);
        Assert.IsType<IOException>(writeException);
    }

    [Fact]
    public async Task Cancellation_ends_a_waiting_copy_as_cancelled_and_inactivity_as_the_sandboxs_error()
    {
        using var cancel = new CancellationTokenSource();
        var source = new ScriptedSource();
        var copy = ResponseBodyCopy.CopyAsync(source, new RecordingDestination(), Activity, new ResponseBodyCopy.Buffers(1), cancel.Token).AsTask();
        await source.WaitForZeroByteReadsAsync(1).WaitAsync(Wait);
        await cancel.CancelAsync();
        Assert.Equal(ForwarderError.ResponseBodyCanceled, (await copy.WaitAsync(Wait)).Error);

        // A sandbox that never sends again: after the activity timeout the copy gives up on it.
        var silent = new ScriptedSource();
        var (error, exception) = await ResponseBodyCopy.CopyAsync(silent, new RecordingDestination(), TimeSpan.FromMilliseconds(200), new ResponseBodyCopy.Buffers(1), CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.Equal(ForwarderError.ResponseBodyDestination, error);
        Assert.IsAssignableFrom<OperationCanceledException>(exception);
    }

    /// <summary>A response body whose reads complete at once while pieces are queued, and wait otherwise.</summary>
    private sealed class ScriptedSource : Paddock.Daemon.Observability.ReadOnlyForwardStream
    {
        private readonly Channel<object> _pieces = Channel.CreateUnbounded<object>();
        private readonly SemaphoreSlim _zeroByteReads = new(0);
        private ReadOnlyMemory<byte> _current;

        /// <summary>The largest buffer a read was given.</summary>
        public int LargestRead { get; private set; }

        public void Ready(ReadOnlyMemory<byte> piece) => _pieces.Writer.TryWrite(piece);

        public void Fail(Exception exception) => _pieces.Writer.TryWrite(exception);

        public void End() => _pieces.Writer.TryComplete();

        public async Task WaitForZeroByteReadsAsync(int count)
        {
            for (var i = 0; i < count; i++)
            {
                await _zeroByteReads.WaitAsync();
            }
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (buffer.IsEmpty)
            {
                _zeroByteReads.Release();
                if (_current.IsEmpty)
                {
                    await _pieces.Reader.WaitToReadAsync(cancellationToken);
                }
                return 0;
            }
            LargestRead = Math.Max(LargestRead, buffer.Length);
            if (_current.IsEmpty)
            {
                if (!_pieces.Reader.TryRead(out var next))
                {
                    if (!await _pieces.Reader.WaitToReadAsync(cancellationToken))
                    {
                        return 0;
                    }
                    _pieces.Reader.TryRead(out next);
                }
                if (next is Exception exception)
                {
                    throw exception;
                }
                _current = (ReadOnlyMemory<byte>)next!;
            }
            var n = Math.Min(buffer.Length, _current.Length);
            _current[..n].CopyTo(buffer);
            _current = _current[n..];
            return n;
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>The client's side: records what was written, in how many writes.</summary>
    private sealed class RecordingDestination(bool fail = false) : Stream
    {
        private readonly MemoryStream _bytes = new();
        private readonly object _lock = new();
        private TaskCompletionSource _written = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Writes { get; private set; }

        public byte[] Bytes
        {
            get
            {
                lock (_lock)
                {
                    return _bytes.ToArray();
                }
            }
        }

        public async Task WaitForBytesAsync(long count)
        {
            while (true)
            {
                Task next;
                lock (_lock)
                {
                    if (_bytes.Length >= count)
                    {
                        return;
                    }
                    next = _written.Task;
                }
                await next;
            }
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (fail)
            {
                throw new IOException("client went away");
            }
            TaskCompletionSource written;
            lock (_lock)
            {
                Writes++;
                _bytes.Write(buffer.Span);
                written = _written;
                _written = new(TaskCreationOptions.RunContinuationsAsynchronously);
            }
            written.SetResult();
            return ValueTask.CompletedTask;
        }

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
