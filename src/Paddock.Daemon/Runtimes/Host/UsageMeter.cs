using System.Collections.Concurrent;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// E2B's metrics for sandboxes whose host processes sit in cgroups of their own (<see cref="ISandboxCgroups"/>): CPU use
/// since the previous sample of the same sandbox (else since it started) as a share of the cores it may use, the
/// memory working set, and the writable layer's size.
/// </summary>
internal sealed class UsageMeter
{
    private readonly ConcurrentDictionary<string, CgroupSample> _lastCpuSample = new(StringComparer.Ordinal);

    public void Forget(string sandboxId) => _lastCpuSample.TryRemove(sandboxId, out _);

    public async Task<SandboxUsage?> SampleAsync(ISandboxCgroups cgroups, SandboxLayout layout, CancellationToken cancellationToken)
    {
        var sandboxId = layout.SandboxId;
        var metadata = SandboxMetadata.TryRead(layout.MetadataFile);
        var now = cgroups.Sample(sandboxId);
        if (metadata is null || now is null)
        {
            return null;
        }
        // CPU use since the previous sample of this sandbox, else since it started; as a share of the cores it
        // may use, which is what E2B's metrics report (0-100).
        var previous = _lastCpuSample.TryGetValue(sandboxId, out var p) ? p : null;
        _lastCpuSample[sandboxId] = now;
        var sinceNs = previous?.CpuUsageNanoseconds ?? 0;
        var sinceTime = previous?.Timestamp ?? metadata.StartedAt;
        var wallNs = (now.Timestamp - sinceTime).TotalMilliseconds * 1e6;
        var cores = Math.Max(1, metadata.Limits.CpuCount);
        var percent = wallNs > 0 ? (now.CpuUsageNanoseconds - sinceNs) / (wallNs * cores) * 100 : 0;

        var disk = await Task.Run(() => Files.AllocatedBytesBeneath(layout.Upper, cancellationToken), cancellationToken);
        return new SandboxUsage(
            now.Timestamp,
            Math.Clamp(percent, 0, 100),
            cores,
            now.MemoryWorkingSetBytes,
            now.MemoryLimitBytes,
            disk,
            metadata.Limits.DiskBytes);
    }
}
