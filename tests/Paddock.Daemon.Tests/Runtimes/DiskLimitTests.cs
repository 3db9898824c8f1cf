using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Runtimes.Runc;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>The sandbox's own disk (<see cref="SandboxDisk"/>): the limit holds, and nothing of it outlives the sandbox.</summary>
[Collection(RuncCollection.Name)]
public sealed class DiskLimitTests
{
    private static readonly ResourceLimits Small = new(CpuCount: 1, MemoryBytes: 512L << 20, MaxPids: 256, DiskBytes: 32L << 20);

    private readonly RuncFixture _fixture;

    public DiskLimitTests(RuncFixture fixture) => _fixture = fixture;

    [Fact]
    public async Task Writing_past_the_disk_size_fails_with_no_space_and_destroy_frees_the_loop_device()
    {
        var before = _fixture.Footprint();
        var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Busybox, Small));
        var image = sandbox.Layout.DiskImage;
        try
        {
            Assert.True(MountTable.IsMountPoint(sandbox.Layout.DiskMount), "the sandbox's disk is not mounted");
            Assert.StartsWith(sandbox.Layout.DiskMount + "/", sandbox.Layout.Upper, StringComparison.Ordinal);
            Assert.Contains(image, LoopBackingFiles());

            var fill = await sandbox.RunAsync("dd if=/dev/zero of=/fill bs=1M count=64 2>&1; echo exit=$?");

            Assert.DoesNotContain("exit=0", fill.Stdout, StringComparison.Ordinal);
            Assert.Contains("No space left", fill.Stdout, StringComparison.Ordinal);
            var files = await sandbox.RunAsync("rm -f /fill; mkdir /many && cd /many && i=0; while [ $i -lt 20000 ] && touch f$i 2>/dev/null; do i=$((i+1)); done; echo made=$i");
            Assert.True(files.Stdout.Contains("made=", StringComparison.Ordinal), $"exit {files.ExitCode}: {files.Stdout} {files.Stderr}");
            Assert.DoesNotContain("made=20000", files.Stdout, StringComparison.Ordinal); // 32 MiB / 4096 = 8192 inodes
        }
        finally
        {
            await sandbox.DisposeAsync();
        }

        Assert.Equal(before, _fixture.Footprint());
        Assert.DoesNotContain(image, LoopBackingFiles());
        Assert.False(File.Exists(image));
    }

    [Fact]
    public async Task A_restarted_runtime_finds_the_writable_layer_on_the_disk_for_snapshots_and_usage()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Busybox, Small));
        var write = await sandbox.RunAsync("head -c 1048576 /dev/zero > /marker && echo written");
        Assert.Contains("written", write.Stdout, StringComparison.Ordinal);
        var snapshot = Directory.CreateTempSubdirectory("paddock-disk-snapshot-");
        try
        {
            using var restarted = _fixture.NewRuntime();

            var usage = await restarted.GetUsageAsync(sandbox.Id, TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
            await restarted.SnapshotFilesystemAsync(sandbox.Id, Path.Combine(snapshot.FullName, "layer"), TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));

            Assert.NotNull(usage);
            Assert.True(usage.DiskUsedBytes >= 1048576, $"disk used: {usage.DiskUsedBytes}");
            Assert.Equal(1048576, new FileInfo(Path.Combine(snapshot.FullName, "layer", "marker")).Length);
            Assert.False(Directory.Exists(Path.Combine(snapshot.FullName, "layer", "lost+found")));
        }
        finally
        {
            snapshot.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task With_enforcement_off_the_writable_layer_stays_on_the_state_filesystem()
    {
        using var runtime = new RuncRuntime(_fixture.Options with { EnforceDiskSize = false }, _fixture.AgentBinary, NullLogger<RuncRuntime>.Instance);
        var sandbox = await runtime.StartAsync(_fixture.Spec(_fixture.Busybox, Small), TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        try
        {
            var layout = new SandboxLayout(_fixture.Options, sandbox.SandboxId);
            Assert.False(File.Exists(layout.DiskImage));
            Assert.Equal(Path.Combine(layout.Directory, "upper"), layout.Upper);
        }
        finally
        {
            await runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        }
    }

    [Fact]
    public async Task Cleanup_of_leftovers_unmounts_a_disk_that_no_container_uses()
    {
        var before = _fixture.Footprint();
        var layout = new SandboxLayout(_fixture.Options, "t-leftover-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(layout.Directory);
        try
        {
            // What a daemon that died between the disk and the container leaves.
            await SandboxDisk.CreateAsync(layout, 16L << 20, 4096, TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
            Assert.Contains(layout.DiskImage, LoopBackingFiles());

            using var restarted = _fixture.NewRuntime();
            var removed = await restarted.CleanupLeftoversAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));

            Assert.Contains(layout.SandboxId, removed);
            Assert.DoesNotContain(layout.DiskImage, LoopBackingFiles());
            Assert.Equal(before, _fixture.Footprint());
        }
        finally
        {
            await _fixture.Runtime.DestroyAsync(layout.SandboxId, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        }
    }

    /// <summary>The files behind the host's loop devices now.</summary>
    private static List<string> LoopBackingFiles() =>
        Directory.EnumerateDirectories("/sys/block", "loop*")
            .Select(d => Path.Combine(d, "loop", "backing_file"))
            .Where(File.Exists)
            .Select(f => File.ReadAllText(f).Trim())
            .ToList();
}
