using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Paddock.Agent.Native;

namespace Paddock.Agent.Processes;

/// <summary>
/// Waits for process output to become readable: one thread on one epoll set for every output descriptor of every
/// process, each registered <em>one-shot</em>, so a descriptor wakes the agent only when a pump is waiting on it.
/// </summary>
/// <remarks>
/// .NET's socket engine (a Socket over the pipe, as the pumps used before) keeps every descriptor in its epoll set
/// edge-triggered for good, so every write of a process woke the engine's thread, whether or not a read was
/// waiting. Measured with bench/ (`head -c 256M /dev/zero`, which writes 8 KiB at a time, through Start): about
/// 14,000 wake-ups of that thread per 256 MiB while the pump let a flood gather in the pipe, a quarter of the agent's
/// context switches (perf record -e context-switches); on this project's VMs every switch costs tens of
/// microseconds. One-shot registrations wake the agent once per read that found the pipe empty, whatever the
/// process writes meanwhile.
/// </remarks>
internal sealed class OutputPoller
{
    private const int BatchSize = 64;

    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle _epoll = Epoll.Create();
    private readonly ConcurrentDictionary<ulong, OutputSource> _sources = new();
    private readonly ILogger<OutputPoller> _logger;
    private long _nextId;
    private int _started;

    public OutputPoller(ILogger<OutputPoller> logger)
    {
        _logger = logger;
    }

    /// <summary>
    /// Starts the poller's thread at the first descriptor, not with the agent, so that an agent answers /health
    /// sooner and a sandbox that never runs a command never starts it: NativeAOT's Thread.Start spins in sched_yield
    /// until the new thread runs, costly on this project's VMs (perf of 30 agent starts, issue 19: 39% of the main
    /// thread's samples before the agent listened were that spin, a third of them for this thread). A plain thread,
    /// not the pool's: it blocks in epoll_wait for as long as nothing happens, and then lives as long as the agent,
    /// as .NET's own socket engine thread does. Readiness that arrived before its first wait is reported by that wait.
    /// </summary>
    private void EnsureStarted()
    {
        if (Volatile.Read(ref _started) == 0 && Interlocked.Exchange(ref _started, 1) == 0)
        {
            new Thread(Loop) { IsBackground = true, Name = "Paddock output poller" }.Start();
        }
    }

    /// <summary>
    /// Takes <paramref name="fd"/> (a pipe's read end or a terminal's master) for non-blocking reads. The caller
    /// still owns the descriptor and must dispose the source before closing it.
    /// </summary>
    public OutputSource Add(SafeHandle fd)
    {
        var rc = Descriptors.SetNonBlocking(fd);
        if (rc != 0)
        {
            throw new IOException($"cannot make an output descriptor non-blocking: {Errno.Message(-rc)}", -rc);
        }
        var source = new OutputSource(this, (ulong)Interlocked.Increment(ref _nextId), fd);
        _sources[source.Id] = source;
        EnsureStarted();
        return source;
    }

    internal int Arm(OutputSource source, bool added) => added
        ? Epoll.Modify(_epoll, source.Descriptor, Epoll.EPOLLIN | Epoll.EPOLLRDHUP | Epoll.EPOLLONESHOT, source.Id)
        : Epoll.Add(_epoll, source.Descriptor, Epoll.EPOLLIN | Epoll.EPOLLRDHUP | Epoll.EPOLLONESHOT, source.Id);

    internal void Remove(OutputSource source, bool added)
    {
        _sources.TryRemove(source.Id, out _);
        if (added)
        {
            // Before the owner closes the descriptor: a closed descriptor leaves the set only with its last duplicate.
            _ = Epoll.Remove(_epoll, source.Descriptor);
        }
    }

    private unsafe void Loop()
    {
        var events = (byte*)NativeMemory.Alloc((nuint)(BatchSize * Epoll.EventSize));
        // Bounded only by the agent's life, like the runtime's own socket engine loop; a failure other than EINTR
        // (which cannot happen with a valid descriptor) is logged and the loop goes on.
        while (true)
        {
            var n = Epoll.Wait(_epoll, events, BatchSize);
            if (n < 0)
            {
                if (-n != Errno.EINTR)
                {
                    ProcessLog.PollFailed(_logger, Errno.Message(-n));
                    Thread.Sleep(100);
                }
                continue;
            }
            for (var i = 0; i < n; i++)
            {
                var (_, id) = Epoll.Read(events, i);
                if (_sources.TryGetValue(id, out var source))
                {
                    source.Signal();
                }
            }
        }
    }
}

/// <summary>One output descriptor of a process, read without blocking; readiness comes from <see cref="OutputPoller"/>.</summary>
internal sealed class OutputSource : IDisposable
{
    private readonly OutputPoller _poller;
    private readonly Lock _gate = new();
    private TaskCompletionSource? _waiter;
    private bool _added;
    private bool _disposed;

    internal OutputSource(OutputPoller poller, ulong id, SafeHandle descriptor)
    {
        _poller = poller;
        Id = id;
        Descriptor = descriptor;
    }

    internal ulong Id { get; }

    internal SafeHandle Descriptor { get; }

    /// <summary>
    /// Reads what is there now: the bytes read, 0 at end of file, -1 when nothing is there yet. A terminal master
    /// reports EIO once every slave descriptor is closed: that is its end of file. Other errors throw
    /// <see cref="IOException"/>.
    /// </summary>
    public int TryRead(Span<byte> buffer)
    {
        while (true)
        {
            var n = Descriptors.Read(Descriptor, buffer);
            if (n >= 0)
            {
                return n;
            }
            switch (-n)
            {
                case Errno.EINTR:
                    continue;
                case Errno.EAGAIN:
                    return -1;
                case Errno.EIO:
                    return 0;
                default:
                    throw new IOException($"reading process output failed: {Errno.Message(-n)}", -n);
            }
        }
    }

    /// <summary>
    /// Reads at least one byte (or end of file), waiting for output when there is none: the bytes read, and whether
    /// the read had to wait (false: output was already waiting when it began).
    /// </summary>
    public async ValueTask<(int Bytes, bool Waited)> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var waited = false;
        // Each pass waits for one readiness event; a spurious one (from a wait cancelled earlier) only costs a pass.
        while (true)
        {
            var n = TryRead(buffer.Span);
            if (n >= 0)
            {
                return (n, waited);
            }
            await WaitReadableAsync(cancellationToken);
            waited = true;
        }
    }

    private async ValueTask WaitReadableAsync(CancellationToken cancellationToken)
    {
        var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _waiter = waiter;
            var rc = _poller.Arm(this, _added);
            if (rc != 0)
            {
                _waiter = null;
                throw new IOException($"cannot wait for process output: {Errno.Message(-rc)}", -rc);
            }
            _added = true;
        }
        using (cancellationToken.UnsafeRegister(static w => ((TaskCompletionSource)w!).TrySetCanceled(), waiter))
        {
            await waiter.Task;
        }
    }

    /// <summary>Called by the poller's thread when the descriptor became readable (or hung up).</summary>
    internal void Signal()
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            waiter = _waiter;
            _waiter = null;
        }
        waiter?.TrySetResult();
    }

    public void Dispose()
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            waiter = _waiter;
            _waiter = null;
            _poller.Remove(this, _added);
        }
        waiter?.TrySetException(new ObjectDisposedException(nameof(OutputSource)));
    }
}
