using Microsoft.Extensions.Logging;

namespace Paddock.Daemon.Runtimes;

/// <summary>Log events of the runtimes (ids 3000-3099).</summary>
internal static partial class RuntimeLog
{
    [LoggerMessage(3000, LogLevel.Information, "Agent bundle ready at {Directory} ({Files} files)")]
    public static partial void AgentBundleBuilt(ILogger logger, string directory, int files);

    [LoggerMessage(3001, LogLevel.Information, "Sandbox {SandboxId} started in {Milliseconds} ms (host pid {HostPid})")]
    public static partial void SandboxStarted(ILogger logger, string sandboxId, long milliseconds, int hostPid);

    [LoggerMessage(3002, LogLevel.Warning, "Sandbox {SandboxId} failed to start; cleaning up")]
    public static partial void SandboxStartFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(3003, LogLevel.Information, "Sandbox {SandboxId} destroyed")]
    public static partial void SandboxDestroyed(ILogger logger, string sandboxId);

    [LoggerMessage(3004, LogLevel.Information, "Removed leftovers of sandbox {SandboxId}")]
    public static partial void LeftoverRemoved(ILogger logger, string sandboxId);

    [LoggerMessage(3005, LogLevel.Warning, "Could not remove leftovers of sandbox {SandboxId}")]
    public static partial void LeftoverRemovalFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(3006, LogLevel.Warning, "Cleanup after the failed start of sandbox {SandboxId} failed too; CleanupLeftoversAsync will retry")]
    public static partial void CleanupAfterFailedStartFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(3009, LogLevel.Warning, "The {Tier} isolation tier is not available on this host: {Reason}. Sandboxes that ask for it get a 503; the other tiers serve as usual")]
    public static partial void TierUnavailable(ILogger logger, string tier, string reason);

    [LoggerMessage(3011, LogLevel.Warning, "Could not remove the {Tier} tier's state at {Directory}; the next start re-uses it")]
    public static partial void TierStateRemovalFailed(ILogger logger, string tier, string directory, Exception exception);

    [LoggerMessage(3010, LogLevel.Information, "Isolation tiers: {Tiers}; default {DefaultTier}")]
    public static partial void Tiers(ILogger logger, string tiers, string defaultTier);

    [LoggerMessage(3008, LogLevel.Debug, "Sandbox {SandboxId} start: prepare {PrepareMs} ms, runc run {RuncMs} ms, agent ready {AgentMs} ms")]
    public static partial void StartPhases(ILogger logger, string sandboxId, long prepareMs, long runcMs, long agentMs);

    [LoggerMessage(3007, LogLevel.Debug, "Sandbox {SandboxId}: overlay busy at unmount, retrying")]
    public static partial void OverlayBusy(ILogger logger, string sandboxId);

    [LoggerMessage(3016, LogLevel.Warning, "Sandbox {SandboxId}: its disk image is still attached to {Device} (a mount namespace made while it ran still holds its filesystem); mounted that device again, not a second copy")]
    public static partial void DiskStillAttached(ILogger logger, string sandboxId, string device);

    [LoggerMessage(3012, LogLevel.Information, "{Tier} tier: cgroup layout {Mode}, sandboxes under '{Parent}'")]
    public static partial void CgroupLayout(ILogger logger, string tier, string mode, string parent);

    [LoggerMessage(3013, LogLevel.Warning, "Sandbox {SandboxId}: its agent exited after the kernel's OOM killer killed {OomKills} process(es) at the sandbox's memory limit")]
    public static partial void AgentExitAfterOom(ILogger logger, string sandboxId, long oomKills);

    [LoggerMessage(3015, LogLevel.Information, "runc tier: OCI runtime {Name} ({Binary}): {Reason}")]
    public static partial void OciRuntimeChosen(ILogger logger, string name, string binary, string reason);

    [LoggerMessage(3050, LogLevel.Information, "Sandbox {SandboxId}: filesystem snapshot of {Bytes} bytes, frozen after {PauseMs} ms, done in {TotalMs} ms")]
    public static partial void SnapshotTaken(ILogger logger, string sandboxId, long bytes, long pauseMs, long totalMs);

    [LoggerMessage(3060, LogLevel.Information, "Sandbox {SandboxId} paused (memory kept: {Memory}) in {Milliseconds} ms, {ImageBytes} bytes of memory image")]
    public static partial void SandboxPaused(ILogger logger, string sandboxId, bool memory, long milliseconds, long imageBytes);

    [LoggerMessage(3061, LogLevel.Information, "Sandbox {SandboxId} resumed (from memory: {Memory}) in {Milliseconds} ms")]
    public static partial void SandboxResumed(ILogger logger, string sandboxId, bool memory, long milliseconds);

    [LoggerMessage(3062, LogLevel.Warning, "Sandbox {SandboxId}: resume failed; it stays paused")]
    public static partial void ResumeFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(3065, LogLevel.Warning, "Sandbox {SandboxId}: telling the restored agent to check its listeners (runsc kill USR2) failed; waiting for it to answer anyway")]
    public static partial void RestoreSignalFailed(ILogger logger, string sandboxId);

    [LoggerMessage(3063, LogLevel.Information, "Sandbox {SandboxId}: paused sandbox settled (host resources of an interrupted pause or resume released)")]
    public static partial void PausedSettled(ILogger logger, string sandboxId);

    [LoggerMessage(3070, LogLevel.Information, "Sandbox {SandboxId} forked: {Running} of {Count} copies running; captured in {CaptureMs} ms, done in {TotalMs} ms")]
    public static partial void SandboxForked(ILogger logger, string sandboxId, int count, int running, long captureMs, long totalMs);

    [LoggerMessage(3071, LogLevel.Debug, "Sandbox {SandboxId}: fork copy {CopyId} restored in {Milliseconds} ms (host pid {Pid})")]
    public static partial void ForkCopyRestored(ILogger logger, string sandboxId, string copyId, long milliseconds, int pid);

    [LoggerMessage(3072, LogLevel.Information, "Removed the fork capture {Path} that an interrupted fork left")]
    public static partial void ForkCaptureRemoved(ILogger logger, string path);

    [LoggerMessage(3074, LogLevel.Information, "Sandbox {SandboxId}: memory snapshot of {Bytes} bytes written to {Path} in {Milliseconds} ms")]
    public static partial void MemorySnapshotTaken(ILogger logger, string sandboxId, long bytes, string path, long milliseconds);

    [LoggerMessage(3073, LogLevel.Information, "Sandbox {SandboxId}: resumed from a runsc pause that an interrupted fork or snapshot left")]
    public static partial void LeftPausedResumed(ILogger logger, string sandboxId);
}
