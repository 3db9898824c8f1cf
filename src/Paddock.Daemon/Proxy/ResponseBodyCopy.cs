using System.Buffers;
using Yarp.ReverseProxy.Forwarder;

namespace Paddock.Daemon.Proxy;

/// <summary>
/// Copies a sandbox's response body to the client: paddockd's own copy loop, used instead of YARP's for every proxied
/// response but an upgrade (see <see cref="SandboxProxyMiddleware"/>).
/// </summary>
/// <remarks>
/// YARP's copier moves at most 64 KiB per step, and every step is a read, a write to Kestrel with its flush, and a
/// zero-byte read: three hand-offs between threads (the copy, Kestrel's output, the socket engine). Through paddockd that
/// cost about 2 ms of its CPU per MiB in every direction (bench/README.md, `bench/run agent --through-daemon`), on the
/// same CPUs as the sandbox and the client, and YARP's buffer size is not configurable. Here data that is already waiting
/// is gathered into one large buffer by reads that complete at once, and written to the client in one write when the
/// buffer is full or when the next read would wait; a small read (interactive output) is written at once, so nothing
/// is held back from a client that waits for it. An idle body holds no buffer: after a small read the loop waits for
/// data with a zero-byte read before it takes one. After a large read it reads straight into the buffer (a zero-byte
/// read would make a chunked body deliver its next 4 KiB alone), so a body that goes quiet just after a burst holds
/// its buffer while it waits: at most <see cref="Buffers.Shared"/>'s 64 bodies hold a large one, the rest YARP's 64 KiB.
/// </remarks>
internal static class ResponseBodyCopy
{
    internal const int LargeBuffer = 1 << 20;

    /// <summary>YARP's copy buffer: what a body gets while the large ones are all in use.</summary>
    internal const int SmallBuffer = 64 * 1024;

    /// <summary>A read at least this large (SocketsHttpHandler's connection buffer) means more data was waiting behind it.</summary>
    internal const int FloodRead = 4096;

    /// <summary>
    /// Copies <paramref name="source"/> to <paramref name="destination"/> until the source ends. Never throws: the outcome
    /// is YARP's error for it (<see cref="ForwarderError.None"/> when the whole body was copied) and the exception.
    /// </summary>
    /// <param name="cancellation">Ends the copy (the client went away, the sandbox ended): <see cref="ForwarderError.ResponseBodyCanceled"/>.</param>
    /// <param name="activityTimeout">How long a read or write may wait before the copy gives up, as YARP's activity timeout.</param>
    /// <param name="buffers">Where the large buffers come from: <see cref="Buffers.Shared"/> but in tests.</param>
    public static async ValueTask<(ForwarderError Error, Exception? Exception)> CopyAsync(
        Stream source, Stream destination, TimeSpan activityTimeout, Buffers buffers, CancellationToken cancellation)
    {
        using var activity = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        activity.CancelAfter(activityTimeout);
        var token = activity.Token;
        Buffers.Lease buffer = default;
        // The data read but not yet written: buffer[start..end).
        int start = 0, end = 0;
        var reading = true;
        try
        {
            var flooding = false;
            while (true)
            {
                reading = true;
                if (!flooding)
                {
                    buffer.Return();
                    // Waits for data; a zero-byte read returns nothing by design.
#pragma warning disable CA2022
                    await source.ReadAsync(Memory<byte>.Empty, token);
#pragma warning restore CA2022
                }
                if (buffer.Array is null)
                {
                    buffer = buffers.Rent();
                }
                else if (buffer.Array.Length - end < FloodRead)
                {
                    await WriteGatheredAsync();
                    start = end = 0;
                }
                var read = source.ReadAsync(buffer.Array.AsMemory(end), token);
                if (!read.IsCompleted && end > start)
                {
                    // Nothing more is waiting: the client gets what was gathered while the read waits (another part of the buffer).
                    await WriteGatheredAsync();
                    start = end;
                }
                var n = await read;
                activity.CancelAfter(activityTimeout);
                if (n == 0)
                {
                    if (end > start)
                    {
                        await WriteGatheredAsync();
                    }
                    return (ForwarderError.None, null);
                }
                end += n;
                flooding = n >= FloodRead;
                if (!flooding)
                {
                    await WriteGatheredAsync();
                    activity.CancelAfter(activityTimeout);
                    start = end = 0;
                }
            }
        }
        catch (Exception ex)
        {
            // As YARP's copier: cancelled from outside, else blamed on the side whose call failed (a timeout included).
            var error = cancellation.IsCancellationRequested ? ForwarderError.ResponseBodyCanceled
                : reading ? ForwarderError.ResponseBodyDestination
                : ForwarderError.ResponseBodyClient;
            return (error, ex);
        }
        finally
        {
            buffer.Return();
        }

        // buffer[start..end) to the client; a failure meanwhile is the client's.
        async ValueTask WriteGatheredAsync()
        {
            reading = false;
            await destination.WriteAsync(buffer.Array.AsMemory(start, end - start), token);
            reading = true;
        }
    }

    /// <summary>The copy buffers: large ones while fewer than <c>maxLarge</c> are out, else YARP's size.</summary>
    internal sealed class Buffers(int maxLarge)
    {
        /// <summary>Bounds what bodies that went quiet after a burst can hold: 64 MiB.</summary>
        public static readonly Buffers Shared = new(64);

        private int _largeOut;

        public Lease Rent()
        {
            if (Interlocked.Increment(ref _largeOut) <= maxLarge)
            {
                return new Lease(this, ArrayPool<byte>.Shared.Rent(LargeBuffer));
            }
            Interlocked.Decrement(ref _largeOut);
            return new Lease(null, ArrayPool<byte>.Shared.Rent(SmallBuffer));
        }

        /// <summary>One rented buffer; <see cref="Owner"/> is set for a large one, which counts against the budget.</summary>
        internal struct Lease(Buffers? owner, byte[] array)
        {
            public byte[]? Array = array;
            private Buffers? Owner = owner;

            public void Return()
            {
                if (Array is null)
                {
                    return;
                }
                ArrayPool<byte>.Shared.Return(Array);
                Array = null;
                if (Owner is not null)
                {
                    Interlocked.Decrement(ref Owner._largeOut);
                    Owner = null;
                }
            }
        }
    }
}
