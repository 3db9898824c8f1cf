using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Runtimes.Runc;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// The sandbox disks made ahead (<see cref="DiskStock"/>): a take hands over a fresh, mounted disk of the asked size,
/// never one disk twice, never one that is not mounted; nothing of the stock outlives its runtime or a crashed one.
/// Real mkfs.ext4 and loop mounts, under a directory of this test process alone.
/// </summary>
public sealed class DiskStockTests : IDisposable
{
    private const long Size = 16L << 20;
    private static readonly TimeSpan RefillTimeout = TimeSpan.FromSeconds(60);

    private readonly string _root = Path.Combine(TestEnvironment.StateRoot, "disk-stock-tests", $"{Environment.ProcessId}-{Guid.NewGuid():N}");

    public DiskStockTests()
    {
        TestEnvironment.RequireRootAndRunc();
        Directory.CreateDirectory(_root);
    }

    private string StockRoot => Path.Combine(_root, "stock");

    private string Target(string name) => Path.Combine(_root, name);

    [Fact]
    public async Task A_take_hands_over_a_fresh_mounted_disk_of_the_size_and_never_the_same_disk_twice()
    {
        using var stock = new DiskStock(StockRoot, 4096, depth: 2, NullLogger.Instance);
        Assert.False(stock.TryTake(Size, Target("none")));

        stock.Refill(Size);
        await stock.IdleAsync().WaitAsync(RefillTimeout);
        Assert.Equal(2, stock.ReadyCount(Size));
        Assert.True(stock.TryTake(Size, Target("a")));
        Assert.True(stock.TryTake(Size, Target("b")));
        Assert.False(stock.TryTake(Size, Target("c")));
        Assert.False(stock.TryTake(Size * 2, Target("c")));

        foreach (var name in (string[])["a", "b"])
        {
            var mount = Path.Combine(Target(name), SandboxLayout.DiskMountName);
            Assert.True(MountTable.IsMountPoint(mount), $"{mount} is not mounted");
            Assert.Equal(Size, new FileInfo(Path.Combine(Target(name), SandboxLayout.DiskImageName)).Length);
            Assert.Equal("ext4", MountTable.Read().Single(m => m.MountPoint == mount).FsType);
            // Fresh: only what mkfs makes.
            Assert.Equal(new[] { "lost+found" }, Directory.EnumerateFileSystemEntries(mount).Select(Path.GetFileName));
        }
        File.WriteAllText(Path.Combine(Target("a"), SandboxLayout.DiskMountName, "mine"), "a");
        Assert.False(File.Exists(Path.Combine(Target("b"), SandboxLayout.DiskMountName, "mine")));
    }

    [Fact]
    public async Task The_disks_are_copies_of_one_pristine_image_per_size_that_is_never_mounted()
    {
        using var stock = new DiskStock(StockRoot, 4096, depth: 2, NullLogger.Instance);
        stock.Refill(Size);
        await stock.IdleAsync().WaitAsync(RefillTimeout);
        Assert.True(stock.TryTake(Size, Target("a")));
        stock.Refill(Size);
        await stock.IdleAsync().WaitAsync(RefillTimeout);

        var pristine = Assert.Single(Directory.GetFiles(StockRoot, "*.img", SearchOption.AllDirectories),
            f => Path.GetFileName(Path.GetDirectoryName(f)) == DiskStock.PristineDirectoryName);
        Assert.Equal(Size, new FileInfo(pristine).Length);
        // Three disks were made from it (two, then one after the take); none of the loop devices is backed by it.
        var backing = Directory.GetDirectories("/sys/block", "loop*")
            .Select(d => Path.Combine(d, "loop", "backing_file"))
            .Where(File.Exists)
            .Select(f => File.ReadAllText(f).Trim())
            .ToList();
        Assert.DoesNotContain(pristine, backing);
        Assert.Contains(Path.Combine(Target("a"), SandboxLayout.DiskImageName), backing);
        Assert.Equal(2, stock.ReadyCount(Size));
        // The copy is sparse: the image's few metadata blocks, not its size.
        var allocated = Files.Stat(Path.Combine(Target("a"), SandboxLayout.DiskImageName)).AllocatedBytes;
        Assert.True(allocated < Size / 4, $"the copied image holds {allocated} bytes of {Size}");

        // A pristine image that went away behind the stock is made again at the next refill.
        File.Delete(pristine);
        Assert.True(stock.TryTake(Size, Target("b")));
        stock.Refill(Size);
        await stock.IdleAsync().WaitAsync(RefillTimeout);
        Assert.Equal(2, stock.ReadyCount(Size));
        Assert.True(File.Exists(pristine));
    }

    [Fact]
    public void A_sparse_copy_has_the_same_bytes_and_keeps_the_holes()
    {
        var source = Path.Combine(_root, "sparse.src");
        using (var file = new FileStream(source, FileMode.CreateNew, FileAccess.Write))
        {
            file.SetLength(64L << 20);
            file.Position = 0;
            file.Write(Enumerable.Range(0, 8192).Select(i => (byte)(i % 251)).ToArray());
            file.Position = 40L << 20;
            file.Write("in the middle"u8);
            file.Position = (64L << 20) - 3;
            file.Write("end"u8);
        }
        var destination = Path.Combine(_root, "sparse.dst");

        var copied = Files.CopySparse(source, destination);

        Assert.Equal(64L << 20, new FileInfo(destination).Length);
        Assert.True(copied >= 8192 + 16 && copied <= 1L << 20, $"copied {copied} bytes");
        Assert.True(Files.Stat(destination).AllocatedBytes <= 1L << 20, $"the copy holds {Files.Stat(destination).AllocatedBytes} bytes");
        using var a = File.OpenRead(source);
        using var b = File.OpenRead(destination);
        var x = new byte[1 << 20];
        var y = new byte[1 << 20];
        for (var block = 0; block < 64; block++)
        {
            a.ReadExactly(x);
            b.ReadExactly(y);
            Assert.True(x.AsSpan().SequenceEqual(y), $"MiB {block} differs");
        }
        // Never over an existing file.
        Assert.Throws<IOException>(() => Files.CopySparse(source, destination));
    }

    [Fact]
    public async Task Dispose_unmounts_and_removes_every_disk_that_was_not_taken()
    {
        var stock = new DiskStock(StockRoot, 4096, depth: 2, NullLogger.Instance);
        stock.Refill(Size);
        await stock.IdleAsync().WaitAsync(RefillTimeout);
        Assert.Equal(2, MountTable.Under(StockRoot).Count);

        stock.Dispose();

        Assert.Empty(MountTable.Under(StockRoot));
        Assert.False(Directory.Exists(StockRoot));
        Assert.False(stock.TryTake(Size, Target("after")));
    }

    [Fact]
    public async Task A_disk_unmounted_behind_the_stock_is_not_handed_out()
    {
        using var stock = new DiskStock(StockRoot, 4096, depth: 1, NullLogger.Instance);
        stock.Refill(Size);
        await stock.IdleAsync().WaitAsync(RefillTimeout);
        var mount = Assert.Single(MountTable.Under(StockRoot));
        Assert.Equal(0, Mounts.Unmount(mount, Mounts.UMOUNT_NOFOLLOW));

        Assert.False(stock.TryTake(Size, Target("a")));
        Assert.False(Directory.Exists(Target("a")));
        Assert.False(Directory.Exists(Path.GetDirectoryName(mount)));
    }

    [Fact]
    public async Task A_new_stock_removes_the_disks_of_a_process_that_is_gone_and_leaves_a_live_one_alone()
    {
        using (var live = new DiskStock(StockRoot, 4096, depth: 1, NullLogger.Instance))
        {
            live.Refill(Size);
            await live.IdleAsync().WaitAsync(RefillTimeout);
            // What a crashed daemon leaves: its instance directory with a mounted disk, named after a pid that is gone.
            var liveEntry = Path.GetDirectoryName(Assert.Single(MountTable.Under(StockRoot)))!;
            var deadInstance = Path.Combine(StockRoot, $"{DeadPid()}.{Guid.NewGuid():N}");
            var deadEntry = Path.Combine(deadInstance, "leftover");
            Directory.CreateDirectory(deadEntry);
            Directory.CreateDirectory(Path.Combine(deadInstance, DiskStock.PristineDirectoryName));
            File.WriteAllText(Path.Combine(deadInstance, DiskStock.PristineDirectoryName, $"{Size}.img"), "");
            await SandboxDisk.CreateAsync(Path.Combine(deadEntry, SandboxLayout.DiskImageName), Path.Combine(deadEntry, SandboxLayout.DiskMountName),
                Size, 4096, TestEnvironment.Timeout(RefillTimeout));

            using var next = new DiskStock(StockRoot, 4096, depth: 1, NullLogger.Instance);

            Assert.False(Directory.Exists(deadInstance));
            Assert.Equal(new[] { Path.Combine(liveEntry, SandboxLayout.DiskMountName) }, MountTable.Under(StockRoot));
            Assert.True(live.TryTake(Size, Target("a")));
        }
        Assert.Empty(MountTable.Under(StockRoot));
    }

    private static int DeadPid()
    {
        // pid_max bounds pids; counting down from it finds one with no process quickly.
        var max = int.Parse(File.ReadAllText("/proc/sys/kernel/pid_max").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        for (var pid = max - 1; pid > max - 10_000; pid--)
        {
            if (!Directory.Exists($"/proc/{pid}"))
            {
                return pid;
            }
        }
        throw new InvalidOperationException("no free pid found");
    }

    public void Dispose()
    {
        foreach (var mount in MountTable.Under(_root))
        {
            Mounts.Unmount(mount, Mounts.MNT_DETACH | Mounts.UMOUNT_NOFOLLOW);
        }
        if (MountTable.Under(_root).Count == 0 && Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }
}
