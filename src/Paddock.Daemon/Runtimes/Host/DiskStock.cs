using System.Globalization;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// Sandbox disks (<see cref="SandboxDisk"/>) made ahead, a few per image size: a create takes one with a rename of its
/// directory into place instead of running mkfs.ext4 and mount itself, and a background refill makes the next.
/// Each disk is made fresh for one sandbox and goes with it, so nothing carries over from one sandbox to the next; a
/// disk that was never taken is unmounted and deleted when the runtime is disposed.
/// </summary>
/// <remarks>
/// Why: the disk was the largest of the daemon's own steps of a cold create (the lead's Server-Timing of 2026-11-28:
/// disk 29 ms of a 240 ms create on a quiet machine, 40-390 ms at load 30), while a rename is one system call.
/// Layout: <c>ROOT/PID.INSTANCE/SIZE-GUID/{disk.img, disk/}</c>, the inner directory laid out as a sandbox directory's
/// disk (<see cref="SandboxLayout.DiskImageName"/>, <see cref="SandboxLayout.DiskMountName"/>). ROOT must be on the
/// filesystem of the sandbox directories (the rename cannot cross filesystems). Each runtime instance owns its own
/// subdirectory, so that a second instance over the same state (a test's "restarted daemon") never takes or removes
/// the first one's disks; the subdirectories of processes that are gone are removed at construction.
/// <para>
/// A disk is a copy of a pristine image: one per size, made by mkfs.ext4 at the first refill of that size into
/// <c>ROOT/PID.INSTANCE/pristine/</c> and never mounted, so every copy starts byte for byte as mkfs made it. The copy
/// skips the image's holes (<see cref="Files.CopySparse"/>): 2026-12-07, a 2 GiB image holds about 1 MB of data,
/// and its copy cost 0.6-0.7 ms of CPU against 5.3 ms for mkfs (bench/README.md), on every create that the stock
/// serves. What the copies share is what mkfs chose at random for the image: the filesystem UUID and the directory
/// hash seed. Neither is a secret of one sandbox from another (no sandbox can read its disk's superblock, and each seed
/// only orders its own filesystem's directories); paddockd mounts by path, never by UUID.
/// </para>
/// </remarks>
internal sealed partial class DiskStock : IDisposable
{
    /// <summary>Sizes stocked at most: a create of any other size makes its disk itself, as without a stock.</summary>
    public const int MaxSizes = 4;

    private readonly string _root;
    private readonly string _directory;
    private readonly int _bytesPerInode;
    private readonly int _depth;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Dictionary<long, Queue<string>> _ready = [];
    private readonly Dictionary<long, Task> _refills = [];
    private readonly CancellationTokenSource _stopping = new();
    private bool _disabled;

    public DiskStock(string root, int bytesPerInode, int depth, ILogger logger)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(depth);
        _root = root;
        _bytesPerInode = bytesPerInode;
        _depth = depth;
        _logger = logger;
        _directory = Path.Combine(root, $"{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}.{Guid.NewGuid():N}");
        RemoveLeftovers();
    }

    /// <summary>How many disks of <paramref name="imageBytes"/> are ready now.</summary>
    public int ReadyCount(long imageBytes)
    {
        lock (_gate)
        {
            return _ready.TryGetValue(imageBytes, out var queue) ? queue.Count : 0;
        }
    }

    /// <summary>
    /// Moves a ready disk of <paramref name="imageBytes"/> to <paramref name="sandboxDirectory"/> (which must not
    /// exist), which then holds its image and its mounted filesystem as <see cref="SandboxDisk"/> would have made
    /// them; false when none is ready (the caller makes its own).
    /// </summary>
    public bool TryTake(long imageBytes, string sandboxDirectory)
    {
        while (true)
        {
            string entry;
            lock (_gate)
            {
                if (!_ready.TryGetValue(imageBytes, out var queue) || !queue.TryDequeue(out entry!))
                {
                    return false;
                }
            }
            // Checked at the take, not trusted from the refill: a disk that is not mounted any more would put the
            // sandbox's writable layer on the state filesystem, without its limit.
            if (!MountTable.IsMountPoint(Path.Combine(entry, SandboxLayout.DiskMountName)))
            {
                LogDiskLost(_logger, entry);
                Remove(entry);
                continue;
            }
            try
            {
                Directory.Move(entry, sandboxDirectory);
                return true;
            }
            catch (IOException ex)
            {
                // EXDEV (the stock is on another filesystem) would fail every time: stop stocking.
                LogTakeFailed(_logger, entry, sandboxDirectory, ex);
                Remove(entry);
                lock (_gate)
                {
                    _disabled = true;
                }
                return false;
            }
        }
    }

    /// <summary>
    /// Makes disks of <paramref name="imageBytes"/> in the background until <see cref="TryTake"/> would find the
    /// stock's depth of them; a refill of that size already running does it.
    /// </summary>
    public void Refill(long imageBytes)
    {
        lock (_gate)
        {
            if (_depth == 0 || _disabled || _stopping.IsCancellationRequested || _refills.ContainsKey(imageBytes))
            {
                return;
            }
            if (!_ready.ContainsKey(imageBytes))
            {
                if (_ready.Count >= MaxSizes)
                {
                    return;
                }
                _ready[imageBytes] = new Queue<string>();
            }
            _refills[imageBytes] = Task.Run(() => RefillAsync(imageBytes, _stopping.Token));
        }
    }

    /// <summary>Completes when no refill runs (for tests).</summary>
    public Task IdleAsync()
    {
        lock (_gate)
        {
            return Task.WhenAll(_refills.Values);
        }
    }

    private async Task RefillAsync(long imageBytes, CancellationToken cancellationToken)
    {
        try
        {
            // Bounded by the depth: each round adds one disk or ends the refill.
            for (var round = 0; round < _depth; round++)
            {
                lock (_gate)
                {
                    if (_ready[imageBytes].Count >= _depth)
                    {
                        return;
                    }
                }
                var entry = Path.Combine(_directory, $"{imageBytes.ToString(CultureInfo.InvariantCulture)}-{Guid.NewGuid():N}");
                Directory.CreateDirectory(entry);
                try
                {
                    var pristine = await PristineAsync(imageBytes, cancellationToken);
                    await SandboxDisk.CreateFromPristineAsync(
                        pristine, Path.Combine(entry, SandboxLayout.DiskImageName), Path.Combine(entry, SandboxLayout.DiskMountName),
                        cancellationToken, background: true);
                }
                catch
                {
                    Remove(entry);
                    throw;
                }
                lock (_gate)
                {
                    if (_stopping.IsCancellationRequested)
                    {
                        Remove(entry); // Dispose has emptied the queues already
                        return;
                    }
                    _ready[imageBytes].Enqueue(entry);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // disposed
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FileNotFoundException)
        {
            // mkfs or mount failed (a full state filesystem, no loop devices left): creates make their own disks,
            // and report the failure themselves, as before.
            LogRefillFailed(_logger, imageBytes, ex);
        }
        finally
        {
            lock (_gate)
            {
                _refills.Remove(imageBytes);
            }
        }
    }

    /// <summary>
    /// The pristine image of <paramref name="imageBytes"/>, made by mkfs the first time. Only the refill of that size
    /// calls it, and one refill of a size runs at a time.
    /// </summary>
    private async Task<string> PristineAsync(long imageBytes, CancellationToken cancellationToken)
    {
        var directory = Path.Combine(_directory, PristineDirectoryName);
        var image = Path.Combine(directory, imageBytes.ToString(CultureInfo.InvariantCulture) + ".img");
        // Made before, and still there (a cleaner of the host's temporary files may have taken it): made again if not.
        // A failed or cancelled mkfs leaves no file behind (below), so one that exists is whole.
        if (File.Exists(image))
        {
            return image;
        }
        Directory.CreateDirectory(directory);
        try
        {
            await SandboxDisk.MakeImageAsync(image, imageBytes, _bytesPerInode, cancellationToken, background: true);
        }
        catch
        {
            File.Delete(image);
            throw;
        }
        return image;
    }

    /// <summary>
    /// The directory of the pristine images, beside the disks' entries: removed with them (<see cref="Remove"/>), and
    /// never taken, since only the queues' entries are.
    /// </summary>
    internal const string PristineDirectoryName = "pristine";

    /// <summary>Unmounts a disk of the stock and deletes its directory; never deletes through a mount.</summary>
    private void Remove(string entry)
    {
        foreach (var mountPoint in MountTable.Under(entry))
        {
            var errno = Mounts.Unmount(mountPoint, Mounts.UMOUNT_NOFOLLOW);
            if (errno == Errno.EBUSY)
            {
                // Nothing of a sandbox uses a disk of the stock, but a scan of the host (updatedb, a backup) may:
                // detached, it goes (and with it the loop device) when that ends.
                errno = Mounts.Unmount(mountPoint, Mounts.MNT_DETACH | Mounts.UMOUNT_NOFOLLOW);
            }
            if (errno is not (0 or Errno.EINVAL or Errno.ENOENT))
            {
                LogRemoveFailed(_logger, entry, Errno.Describe(errno));
                return;
            }
        }
        if (MountTable.Under(entry).Count > 0)
        {
            LogRemoveFailed(_logger, entry, "still mounted");
            return;
        }
        if (Directory.Exists(entry))
        {
            Directory.Delete(entry, recursive: true);
        }
    }

    /// <summary>The stock directories of runtime instances whose process is gone (a daemon that crashed or was killed).</summary>
    private void RemoveLeftovers()
    {
        if (!Directory.Exists(_root))
        {
            return;
        }
        foreach (var instance in Directory.EnumerateDirectories(_root))
        {
            var name = Path.GetFileName(instance);
            var dot = name.IndexOf('.', StringComparison.Ordinal);
            if (dot > 0 && int.TryParse(name.AsSpan(0, dot), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && Directory.Exists($"/proc/{pid}"))
            {
                continue; // a live process's (another runtime instance of this process, or another daemon over this state)
            }
            foreach (var entry in Directory.EnumerateDirectories(instance))
            {
                Remove(entry);
            }
            RemoveIfEmpty(instance);
        }
    }

    private static void RemoveIfEmpty(string directory)
    {
        try
        {
            if (Directory.Exists(directory) && !Directory.EnumerateFileSystemEntries(directory).Any())
            {
                Directory.Delete(directory);
            }
        }
        catch (IOException)
        {
            // filled meanwhile: left for the next cleanup
        }
    }

    public void Dispose()
    {
        List<string> entries;
        Task[] refills;
        lock (_gate)
        {
            if (_stopping.IsCancellationRequested)
            {
                return;
            }
            _stopping.Cancel();
            entries = _ready.Values.SelectMany(q => q).ToList();
            foreach (var queue in _ready.Values)
            {
                queue.Clear();
            }
            refills = _refills.Values.ToArray();
        }
        // A refill that is cancelled kills its mkfs or mount and removes its entry; bounded, as mkfs of an empty
        // image is quick (the kill grace of ExternalCommand is the worst case).
        try
        {
            Task.WaitAll(refills, TimeSpan.FromSeconds(15));
        }
        catch (AggregateException)
        {
            // each refill logs its own failure
        }
        foreach (var entry in entries)
        {
            Remove(entry);
        }
        // A refill cut short between its mkfs and its enqueue leaves its entry here.
        if (Directory.Exists(_directory))
        {
            foreach (var entry in Directory.EnumerateDirectories(_directory))
            {
                Remove(entry);
            }
        }
        RemoveIfEmpty(_directory);
        RemoveIfEmpty(_root);
        _stopping.Dispose();
    }

    [LoggerMessage(3080, LogLevel.Warning, "Disk stock: making disks of {ImageBytes} bytes ahead failed; creates of that size make their own")]
    private static partial void LogRefillFailed(ILogger logger, long imageBytes, Exception ex);

    [LoggerMessage(3081, LogLevel.Warning, "Disk stock: moving {Entry} to {SandboxDirectory} failed; the stock is off, creates make their own disks")]
    private static partial void LogTakeFailed(ILogger logger, string entry, string sandboxDirectory, Exception ex);

    [LoggerMessage(3082, LogLevel.Warning, "Disk stock: {Entry} is not mounted any more; removed")]
    private static partial void LogDiskLost(ILogger logger, string entry);

    [LoggerMessage(3083, LogLevel.Warning, "Disk stock: could not remove {Entry}: {Reason}")]
    private static partial void LogRemoveFailed(ILogger logger, string entry, string reason);
}
