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
