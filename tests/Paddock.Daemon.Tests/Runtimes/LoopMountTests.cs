using System.Diagnostics;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// <see cref="LoopMounts"/>: an image mounted through a loop device with system calls, with the options asked for, and
/// the device detached again by the unmount, or at once when the mount fails. Needs root, as the disk tests do.
/// </summary>
public sealed class LoopMountTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("paddock-loop-");

    public LoopMountTests() => TestEnvironment.RequireRootAndRunc();

    [Fact]
    public async Task An_image_is_mounted_writable_with_the_options_and_its_device_is_freed_by_the_unmount()
    {
        var image = await MakeExt4Async();
        var target = Directory.CreateDirectory(Path.Combine(_dir.FullName, "mnt")).FullName;

        var device = LoopMounts.Mount(image, target, "ext4", Mounts.MS_NODEV | Mounts.MS_NOSUID | LoopMounts.MS_NOATIME);
        try
        {
            Assert.Matches(@"^/dev/loop\d+$", device);
            var line = MountLine(target);
            Assert.NotNull(line);
            Assert.Contains($" - ext4 {device} ", line, StringComparison.Ordinal);
            var options = line!.Split(' ')[5].Split(',');
            Assert.Contains("rw", options);
            Assert.Contains("nodev", options);
            Assert.Contains("nosuid", options);
            Assert.Contains("noatime", options);
            Assert.Equal(image, File.ReadAllText($"/sys/block/{Path.GetFileName(device)}/loop/backing_file").Trim());
            await File.WriteAllTextAsync(Path.Combine(target, "written"), "on the image");
        }
        finally
        {
            Assert.Equal(0, Mounts.Unmount(target, 0));
        }
        Assert.Null(MountLine(target));
        await WaitDetachedAsync(device);
    }

    [Fact]
    public async Task A_failed_mount_leaves_no_device_attached()
    {
        // Not a filesystem: the loop device attaches, the ext4 mount refuses it.
        var image = Path.Combine(_dir.FullName, "zeros.img");
        using (var file = new FileStream(image, FileMode.CreateNew))
        {
            file.SetLength(8L * 1024 * 1024);
        }
        var target = Directory.CreateDirectory(Path.Combine(_dir.FullName, "mnt")).FullName;

        var error = Assert.ThrowsAny<IOException>(() => LoopMounts.Mount(image, target, "ext4", Mounts.MS_NODEV));
        Assert.Contains(image, error.Message, StringComparison.Ordinal);
        Assert.Null(MountLine(target));
        var device = error.Message.Split(' ')[1];
        Assert.Matches(@"^/dev/loop\d+$", device);
        await WaitDetachedAsync(device);
    }

    [Fact]
    public void A_missing_image_is_an_error_that_names_it()
    {
        var missing = Path.Combine(_dir.FullName, "missing.img");
        var error = Assert.ThrowsAny<IOException>(() => LoopMounts.Mount(missing, _dir.FullName, "ext4", 0));
        Assert.Contains(missing, error.Message, StringComparison.Ordinal);
    }

    private async Task<string> MakeExt4Async()
    {
        var image = Path.Combine(_dir.FullName, "disk.img");
        using (var file = new FileStream(image, FileMode.CreateNew))
        {
            file.SetLength(16L * 1024 * 1024);
        }
        using var mkfs = Process.Start(new ProcessStartInfo("mkfs.ext4", ["-q", "-F", "-O", "^has_journal", image]) { UseShellExecute = false })!;
        await mkfs.WaitForExitAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        Assert.Equal(0, mkfs.ExitCode);
        return image;
    }

    private static string? MountLine(string target) =>
        File.ReadLines("/proc/self/mountinfo").FirstOrDefault(l => l.Split(' ')[4] == target);

    /// <summary>Autoclear detaches the device when its last user goes; bounded wait, as the release may finish a moment later.</summary>
    private static async Task WaitDetachedAsync(string device)
    {
        var bound = $"/sys/block/{Path.GetFileName(device)}/loop/backing_file";
        for (var i = 0; i < 100 && File.Exists(bound); i++)
        {
            await Task.Delay(50);
        }
        Assert.False(File.Exists(bound), $"{device} is still attached to {(File.Exists(bound) ? File.ReadAllText(bound).Trim() : "?")}");
    }

    public void Dispose()
    {
        foreach (var line in File.ReadLines("/proc/self/mountinfo").Where(l => l.Split(' ')[4].StartsWith(_dir.FullName, StringComparison.Ordinal)).ToList())
        {
            Mounts.Unmount(line.Split(' ')[4], Mounts.MNT_DETACH);
        }
        _dir.Delete(recursive: true);
    }
}
