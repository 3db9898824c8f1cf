using System.Buffers;

namespace Paddock.Agent.Processes;

internal enum OutputKind
{
    Stdout,
    Stderr,
    Pty,
}

/// <summary>
/// One read of a process's output in a pooled buffer, shared by every subscriber it is delivered to. Reference
/// counted: the pump holds one reference while publishing; the last release returns the buffer to the pool.
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
/// <para>Policy (see Processes/README.md): lossless backpressure, bounded per subscriber. The pump hands each read to every
/// attached subscriber's send (the stream's write to its client) and reads again only when all of them are done, so
/// while a client is busy the output gathers in the pipe and the next read takes it as one event; once the pipe is
/// full the process blocks, as it would writing to a slow terminal. Memory stays bounded (one read per process
/// output, shared by all subscribers) and no attached client misses output. A client that stalls does not stall the
/// process for ever: Kestrel aborts a response that stays below its minimum data rate (240 bytes/s after a 5 s
/// grace), the send fails and the subscriber detaches. With no subscriber, output is read and discarded, so the
/// process never blocks.</para>
/// <para>The pump calls the sends itself rather than queueing chunks for each stream's own loop: every hand-over between
/// tasks is a thread-pool wake-up, and each costs tens of microseconds of CPU on this project's VMs. Measured with
/// bench/ (`head -c 512M /dev/zero` through Start): the queue and its two hand-overs per event were a large part of
/// the agent's context switches.</para>
/// </remarks>
internal sealed class OutputFanout
{
    private readonly Lock _gate = new();
    private OutputSubscription[] _subscribers = [];
    private bool _completed;

    /// <summary>
    /// Attaches a subscriber that receives all output published from now on through <paramref name="send"/>, once
    /// it is started (<see cref="OutputSubscription.Start"/>).
    /// </summary>
    public OutputSubscription Subscribe(Func<OutputChunk, ValueTask> send)
    {
        lock (_gate)
        {
            var subscription = new OutputSubscription(this, send);
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

    /// <summary>
    /// Sends <paramref name="chunk"/> to every attached subscriber and completes when each has sent it or detached;
    /// takes over the caller's reference.
    /// </summary>
    public ValueTask PublishAsync(OutputChunk chunk)
    {
        var subscribers = Volatile.Read(ref _subscribers);
        switch (subscribers.Length)
        {
            case 0:
                chunk.Release();
                return ValueTask.CompletedTask;
            case 1:
                return SendAsync(subscribers[0], chunk);
            default:
                return SendAllAsync(subscribers, chunk);
        }
    }

    private static async ValueTask SendAsync(OutputSubscription subscriber, OutputChunk chunk)
    {
        try
        {
            await subscriber.SendAsync(chunk);
        }
        finally
        {
            chunk.Release();
        }
    }

    private static async ValueTask SendAllAsync(OutputSubscription[] subscribers, OutputChunk chunk)
    {
        try
        {
            // At once to all: one slow client delays the next read, but not the other clients' sends.
            var sends = new Task[subscribers.Length];
            for (var i = 0; i < subscribers.Length; i++)
            {
                sends[i] = subscribers[i].SendAsync(chunk).AsTask();
            }
            await Task.WhenAll(sends);
        }
        finally
        {
            chunk.Release();
        }
    }

    /// <summary>No more output (every publish has completed): each subscriber finishes.</summary>
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

/// <summary>One attached stream's share of the output. Dispose it when the stream ends, however it ends.</summary>
internal sealed class OutputSubscription : IDisposable
{
    private readonly OutputFanout _owner;
    private readonly Func<OutputChunk, ValueTask> _send;
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // Completed with synchronous continuations: the stream waiting on it then writes its end event on the thread that
    // finished it (the process's end, a failed send), one thread-pool wake-up fewer per command. Nothing completes it
    // under a lock.
    private readonly TaskCompletionSource<Exception?> _finished = new();

    internal OutputSubscription(OutputFanout owner, Func<OutputChunk, ValueTask> send)
    {
        _owner = owner;
        _send = send;
    }

    /// <summary>
    /// Completes once every output byte was sent (null), or when a send failed (its exception; the subscriber is
    /// detached then and gets no more output).
    /// </summary>
    public Task<Exception?> Finished => _finished.Task;

    /// <summary>Lets the sends begin: output is held until the stream has written what must come first.</summary>
    public void Start() => _started.TrySetResult();

    internal async ValueTask SendAsync(OutputChunk chunk)
    {
        if (!_started.Task.IsCompleted)
        {
            await _started.Task;
        }
        if (_finished.Task.IsCompleted)
        {
            return;
        }
        try
        {
            // The chunk stays valid until this returns: the publisher releases it afterwards.
            await _send(chunk);
        }
        catch (Exception ex)
        {
            // The client went away, the call's deadline passed, or the stream ended: the stream reports it
            // (Finished), the process goes on without this subscriber.
            _owner.Remove(this);
            _finished.TrySetResult(ex);
        }
    }

    internal void Complete() => _finished.TrySetResult(null);

    public void Dispose()
    {
        _owner.Remove(this);
        _finished.TrySetResult(null);
        // A pump may wait for the start of a stream that ended before it began.
        _started.TrySetResult();
    }
}
