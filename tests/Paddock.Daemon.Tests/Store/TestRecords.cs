using Paddock.Daemon.Store;

namespace Paddock.Daemon.Tests.Store;

internal static class TestRecords
{
    internal static SandboxRecord Record(string id, SandboxState state = SandboxState.Running, DateTimeOffset? startedAt = null) => new()
    {
        SandboxId = id,
        TemplateId = "base-v1",
        Alias = "base",
        RuntimeName = "runc",
        State = state,
        Metadata = new Dictionary<string, string> { ["user"] = "ann", ["quote"] = "a \"b\" & c" },
        CpuCount = 2,
        MemoryMB = 512,
        DiskSizeMB = 1024,
        MaxPids = 1024,
        StartedAt = startedAt ?? DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000),
        EndAt = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_300_000),
        EnvdAccessToken = "envd-token",
        AllowInternetAccess = false,
    };
}
