using System.Runtime.InteropServices;
using Paddock.Daemon.Proxy;

namespace Paddock.Daemon.Tests.Proxy;

public sealed class LargeBlockMemoryPoolTests
{
    [Fact]
    public void Every_rent_is_a_whole_block_that_Kestrel_can_send_as_an_array()
    {
        using var pool = new LargeBlockMemoryPool();
        Assert.Equal(LargeBlockMemoryPool.BlockSize, pool.MaxBufferSize);
        foreach (var size in new[] { -1, 1, 4096, LargeBlockMemoryPool.BlockSize })
        {
            using var block = pool.Rent(size);
            Assert.Equal(LargeBlockMemoryPool.BlockSize, block.Memory.Length);
            // Kestrel's socket sender sends several blocks at once through their arrays.
            Assert.True(MemoryMarshal.TryGetArray<byte>(block.Memory, out var segment));
            Assert.Equal(LargeBlockMemoryPool.BlockSize, segment.Count);
            block.Memory.Span[^1] = 7;
            Assert.Equal(7, segment.Array![segment.Offset + segment.Count - 1]);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(LargeBlockMemoryPool.BlockSize + 1));
    }

    [Fact]
    public void A_returned_block_is_reused_once_however_often_it_is_disposed()
    {
        using var pool = new LargeBlockMemoryPool();
        var first = pool.Rent();
        var array = MemoryMarshal.TryGetArray<byte>(first.Memory, out var segment) ? segment.Array : null;
        first.Dispose();
        first.Dispose();
        Assert.Equal(1, pool.FreeBlocks);
        using var second = pool.Rent();
        using var third = pool.Rent();
        Assert.Equal(0, pool.FreeBlocks);
        // The one returned block went to exactly one of the two renters.
        var arrays = new[] { second, third }.Select(b => MemoryMarshal.TryGetArray<byte>(b.Memory, out var s) ? s.Array : null).ToList();
        Assert.Single(arrays, a => ReferenceEquals(a, array));
    }

    [Fact]
    public void Only_a_bounded_number_of_returned_blocks_is_kept()
    {
        using var pool = new LargeBlockMemoryPool();
        var blocks = Enumerable.Range(0, LargeBlockMemoryPool.MaxFreeBlocks + 10).Select(_ => pool.Rent()).ToList();
        blocks.ForEach(b => b.Dispose());
        Assert.Equal(LargeBlockMemoryPool.MaxFreeBlocks, pool.FreeBlocks);
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pool.Rent());
    }
}
