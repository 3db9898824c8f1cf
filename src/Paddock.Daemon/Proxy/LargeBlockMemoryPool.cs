using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;

namespace Paddock.Daemon.Proxy;

/// <summary>
/// The memory pool of paddockd's listener (Kestrel's socket transport): 64 KiB blocks instead of Kestrel's 4 KiB ones,
/// so that an upload to a sandbox comes off the client's socket in reads of up to 64 KiB.
/// </summary>
/// <remarks>
/// Kestrel's transport receives into the free space of its input pipe's last block, so its reads are at most one block:
/// with the default 4 KiB blocks, strace of paddockd during `bench/run agent --through-daemon` counted about 345
/// <c>recvfrom</c> calls per MiB uploaded (a read and a check for data per 4 KiB), each waking the proxy's copy, which
/// then sent the few KiB it found on to the sandbox. Larger blocks cost nothing while a connection is idle (the
/// transport waits for data before it takes a block) and are returned as soon as their bytes are consumed; a response
/// is written into them as into the small ones. Up to <see cref="MaxFreeBlocks"/> returned blocks are kept for reuse,
/// the rest left to the GC.
/// </remarks>
internal sealed class LargeBlockMemoryPool : MemoryPool<byte>
{
    public const int BlockSize = 64 * 1024;

    /// <summary>Returned blocks kept for reuse (16 MiB).</summary>
    internal const int MaxFreeBlocks = 256;

    private readonly ConcurrentBag<Block> _free = [];
    private int _freeCount;
    private volatile bool _disposed;

    public override int MaxBufferSize => BlockSize;

    /// <summary>Returned blocks held now (for tests).</summary>
    internal int FreeBlocks => Volatile.Read(ref _freeCount);

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minBufferSize, BlockSize);
        if (_free.TryTake(out var block))
        {
            Interlocked.Decrement(ref _freeCount);
            block.Lease();
            return block;
        }
        return new Block(this);
    }

    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        _free.Clear();
    }

    private void Return(Block block)
    {
        if (_disposed || Interlocked.Increment(ref _freeCount) > MaxFreeBlocks)
        {
            Interlocked.Decrement(ref _freeCount);
            return;
        }
        _free.Add(block);
    }

    /// <summary>
    /// One block, allocated pinned (the pinned object heap) for its whole life, so a socket operation needs no pinning of
    /// its own.
    /// </summary>
    private sealed class Block(LargeBlockMemoryPool pool) : MemoryManager<byte>
    {
        private readonly byte[] _array = GC.AllocateUninitializedArray<byte>(BlockSize, pinned: true);
        private int _leased = 1;

        public void Lease() => Volatile.Write(ref _leased, 1);

        public override Span<byte> GetSpan() => _array;

        public override unsafe MemoryHandle Pin(int elementIndex = 0)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, _array.Length);
            return new MemoryHandle(Unsafe.AsPointer(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_array), elementIndex)));
        }

        public override void Unpin()
        {
        }

        /// <summary>The array behind the block: Kestrel's socket sender asks for it to send several blocks in one call.</summary>
        protected override bool TryGetArray(out ArraySegment<byte> segment)
        {
            segment = _array;
            return true;
        }

        protected override void Dispose(bool disposing)
        {
            // IMemoryOwner.Dispose: the block goes back to its pool, once however often it is called.
            if (Interlocked.Exchange(ref _leased, 0) == 1)
            {
                pool.Return(this);
            }
        }
    }

    /// <summary>Registered in the daemon's services, where Kestrel's socket transport takes its pool from.</summary>
    internal sealed class Factory : IMemoryPoolFactory<byte>
    {
        public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => new LargeBlockMemoryPool();
    }
}
