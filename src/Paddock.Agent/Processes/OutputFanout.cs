using System.Buffers;
using System.Threading.Channels;

namespace Paddock.Agent.Processes;

internal enum OutputKind
{
    Stdout,
    Stderr,
    Pty,
}

/// <summary>
/// One read of a process's output in a pooled buffer, shared by every subscriber it is delivered to. Reference
/// counted: the pump holds one reference while publishing, each subscriber one until its client has been sent it;
/// the last release returns the buffer to the pool.
/// </summary>
internal sealed class OutputChunk
{
    private byte[]? _buffer;
    private int _references = 1;

    private OutputChunk(OutputKind kind, byte[] buffer)
    {
        Kind = kind;
        _buffer = buffer;
    }

    public OutputKind Kind { get; }

    public int Length { get; set; }

    public static OutputChunk Rent(OutputKind kind, int size) => new(kind, ArrayPool<byte>.Shared.Rent(size));

    /// <summary>The whole rented buffer, to read into.</summary>
    public Memory<byte> Buffer => _buffer ?? throw new ObjectDisposedException(nameof(OutputChunk));

    /// <summary>The bytes read.</summary>
    public ReadOnlyMemory<byte> Data => Buffer[..Length];

    public void AddReference() => Interlocked.Increment(ref _references);

    public void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0 && Interlocked.Exchange(ref _buffer, null) is { } buffer)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}

/// <summary>
/// Delivers a process's output to every attached stream.
/// </summary>
/// <remarks>
/// Policy (see Processes/README.md): lossless backpressure, bounded per subscriber. Each subscriber has a queue of
/// at most <see cref="SubscriberCapacity"/> chunks; publishing waits while any attached subscriber's queue is full,
/// so the pump stops reading and the process blocks on its full pipe, as it would writing to a slow terminal.
/// Memory stays bounded (chunks × read size per subscriber) and no attached client misses output. A client that
/// stalls does not stall the process for ever: Kestrel aborts a response that stays below its minimum data rate
/// (240 bytes/s after a 5 s grace), the stream's write fails and the subscriber detaches. With no subscriber,
/// publishing returns at once: output nobody is attached to is read and discarded, so the process never blocks.
/// </remarks>
internal sealed class OutputFanout
{
    /// <summary>Chunks queued per subscriber: at most 4 × 1 MiB (the largest read), besides the 1 MiB pipe itself.</summary>
    public const int SubscriberCapacity = 4;

    private readonly Lock _gate = new();
    private OutputSubscription[] _subscribers = [];
    private bool _completed;

    /// <summary>Attaches a subscriber that receives all output published from now on.</summary>
    public OutputSubscription Subscribe()
    {
        lock (_gate)
        {
            var subscription = new OutputSubscription(this);
            if (_completed)
            {
                subscription.Complete();
            }
            else
            {
                _subscribers = [.. _subscribers, subscription];
            }
            return subscription;
        }
    }

    internal void Remove(OutputSubscription subscription)
    {
        lock (_gate)
        {
            _subscribers = Array.FindAll(_subscribers, s => s != subscription);
        }
    }

    /// <summary>Delivers <paramref name="chunk"/> to every subscriber, waiting for room; takes over the caller's reference.</summary>
    public async ValueTask PublishAsync(OutputChunk chunk)
    {
        try
        {
            foreach (var subscriber in Volatile.Read(ref _subscribers))
            {
                chunk.AddReference();
                if (!await subscriber.TryEnqueueAsync(chunk))
                {
                    chunk.Release();
                }
            }
        }
        finally
        {
            chunk.Release();
        }
    }

    /// <summary>No more output: every subscriber's queue ends after what it holds.</summary>
    public void Complete()
    {
        OutputSubscription[] subscribers;
        lock (_gate)
        {
            _completed = true;
            subscribers = _subscribers;
            _subscribers = [];
        }
        foreach (var s in subscribers)
        {
            s.Complete();
        }
    }
}

/// <summary>One attached stream's queue of output. Dispose it when the stream ends, however it ends.</summary>
internal sealed class OutputSubscription : IDisposable
{
    private readonly OutputFanout _owner;
    private readonly Channel<OutputChunk> _queue = Channel.CreateBounded<OutputChunk>(new BoundedChannelOptions(OutputFanout.SubscriberCapacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait,
    });

    internal OutputSubscription(OutputFanout owner)
    {
        _owner = owner;
    }

    /// <summary>Output chunks in order; the caller releases each after sending it. Completes after the last one.</summary>
    public ChannelReader<OutputChunk> Reader => _queue.Reader;

    internal async ValueTask<bool> TryEnqueueAsync(OutputChunk chunk)
    {
        try
        {
            await _queue.Writer.WriteAsync(chunk);
            return true;
        }
        catch (ChannelClosedException)
        {
            return false; // detached meanwhile
        }
    }

    internal void Complete() => _queue.Writer.TryComplete();

    public void Dispose()
    {
        _owner.Remove(this);
        // Completing fails any publisher waiting for room here; then nothing can be added, and what is left is freed.
        _queue.Writer.TryComplete();
        while (_queue.Reader.TryRead(out var chunk))
        {
            chunk.Release();
        }
    }
}
