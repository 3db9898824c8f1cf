using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;

namespace Paddock.Shared.Kestrel;

/// <summary>
/// Kestrel's buffer pool with 64 KiB blocks instead of its 4 KiB ones, for both Kestrel servers of Paddock: the agent's
/// and paddockd's listener (this file is compiled into both). Kestrel receives into one block per recv, so a request
/// body arrived 4 KiB per system call; its responses are gathered from blocks, so a 1 MiB data event went out as 256
/// pieces. Both servers' traffic is mostly large bodies: uploads, downloads and output streams. Measured with bench/:
/// in the agent (256 MiB octet-stream POST /files), recv was over a third of its CPU with 4 KiB blocks, 3.1 ms per MiB
/// in all, and 0.8-1.0 ms with these; in paddockd, uploads through its proxy (`bench/run agent --through-daemon`) went
/// from about 345 recvfrom calls and 2.2-2.4 ms of its CPU per MiB to 1.1-1.4 ms. Idle connections hold no block
/// (Kestrel waits for data before it rents one), and at most <see cref="MaxIdleBlocks"/> returned blocks are kept for
/// reuse; the rest go back to the GC.
/// </summary>
internal sealed class LargeBlockMemoryPool : MemoryPool<byte>
{
    public const int BlockSize = 64 * 1024;

    /// <summary>Returned blocks kept for reuse (4 MiB); more are left to the GC.</summary>
    public const int MaxIdleBlocks = 64;

    private readonly ConcurrentQueue<Block> _idle = new();
    private int _idleCount;

    public override int MaxBufferSize => BlockSize;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minBufferSize, BlockSize);
        if (_idle.TryDequeue(out var block))
        {
            Interlocked.Decrement(ref _idleCount);
            block.Rented = true;
            return block;
        }
        return new Block(this);
    }

    /// <summary>Lets go of the returned blocks kept for reuse, so that the next collection can free them (<see cref="IdleTrim"/>).</summary>
    public void TrimIdle()
    {
        // Bounded by the count at entry: blocks returned meanwhile may stay.
        for (var i = Volatile.Read(ref _idleCount); i > 0 && _idle.TryDequeue(out _); i--)
        {
            Interlocked.Decrement(ref _idleCount);
        }
    }

    private void Return(Block block)
    {
        if (Interlocked.Increment(ref _idleCount) <= MaxIdleBlocks)
        {
            _idle.Enqueue(block);
        }
        else
        {
            Interlocked.Decrement(ref _idleCount);
        }
    }

    protected override void Dispose(bool disposing)
    {
        _idle.Clear();
    }

    private sealed class Block : IMemoryOwner<byte>
    {
        private readonly LargeBlockMemoryPool _pool;

        public Block(LargeBlockMemoryPool pool)
        {
            _pool = pool;
            // Pinned (on the pinned object heap), as Kestrel's own blocks are: sockets pin what they send and receive.
            Memory = MemoryMarshal.CreateFromPinnedArray(GC.AllocateUninitializedArray<byte>(BlockSize, pinned: true), 0, BlockSize);
            Rented = true;
        }

        public Memory<byte> Memory { get; }

        public bool Rented { get; set; }

        public void Dispose()
        {
            if (Rented)
            {
                Rented = false;
                _pool.Return(this);
            }
        }
    }
}

/// <summary>Gives Kestrel <see cref="LargeBlockMemoryPool"/>s (Kestrel's socket transport asks for an <see cref="IMemoryPoolFactory{T}"/>: the agent sets it, paddockd registers it in its services).</summary>
internal sealed class LargeBlockMemoryPoolFactory : IMemoryPoolFactory<byte>
{
    // Kestrel asks for a few pools (one per transport and listener) at start; they live as long as the server.
    private readonly ConcurrentQueue<LargeBlockMemoryPool> _pools = new();

    public MemoryPool<byte> Create(MemoryPoolOptions? options = null)
    {
        var pool = new LargeBlockMemoryPool();
        _pools.Enqueue(pool);
        return pool;
    }

    /// <summary><see cref="LargeBlockMemoryPool.TrimIdle"/> of every pool made so far.</summary>
    public void TrimIdle()
    {
        foreach (var pool in _pools)
        {
            pool.TrimIdle();
        }
    }
}
