using System.Collections.Immutable;
using System.Data.Common;
using System.Globalization;
using Orleans.Concurrency;
using Orleans.Runtime;
using Paddock.Daemon.Pools;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Teams;

namespace Paddock.Daemon.Cluster;

/// <summary>One per node, activated only on that node's silo (<see cref="NodePlacement"/>); keyed by the node id.</summary>
internal interface INodeGrain : IGrainWithStringKey
{
    /// <summary>What the node runs and can still take, read from its own memory (not from the store).</summary>
    Task<NodeReport> GetReportAsync();

    /// <summary>
    /// Reloads the node's teams and API keys from the store (another node changed them: ClusterTeamFanout); false
    /// when the node could not read the store (logged there; it keeps its keys until its periodic reload works).
    /// Interleaved: a placement's report must not wait behind a store read.
    /// </summary>
    [AlwaysInterleave]
    Task<bool> ReloadTeamsAsync();

    /// <summary>
    /// Removes the node's copy of a deleted template's layer (ClusterTemplateReplicas); false when it had none or a
    /// template still names it.
    /// </summary>
    [AlwaysInterleave]
    Task<bool> RemoveLayerCopyAsync(string layer);
}

/// <summary>
/// A node's answer about itself, read from its own memory (and one small procfs read), cheap enough to ask on every
/// create. The fields after <see cref="MaxSandboxes"/> came with placement by capacity: they are not required, so a
/// report from a node that does not send them reads as "unknown" (no memory figure, no tiers, no templates), and
/// <see cref="ClusterPlacement.Choose"/> then filters on its slots only.
/// </summary>
[GenerateSerializer, Immutable]
internal sealed record NodeReport
{
    [Id(0)] public required string NodeId { get; init; }

    [Id(1)] public required string SiloAddress { get; init; }

    /// <summary>Sandboxes running or starting on the node.</summary>
    [Id(2)] public required int Reserved { get; init; }

    /// <summary>The node's own limit (<c>--max-sandboxes</c>).</summary>
    [Id(3)] public required int MaxSandboxes { get; init; }

    /// <summary>The host's CPUs (what the API's <c>cpuCount</c> check allows at most on that node); 0: not reported.</summary>
    [Id(4)] public int Cpus { get; init; }

    /// <summary>The CPUs promised to its running sandboxes: the sum of their <c>cpuCount</c> (a quota each, not a reservation).</summary>
    [Id(5)] public int CpusPromised { get; init; }

    /// <summary>The memory the daemon may use on its host, in MiB (what the API's <c>memoryMB</c> check allows at most); 0: not reported.</summary>
    [Id(6)] public long MemoryTotalMB { get; init; }

    /// <summary>The host's <c>MemAvailable</c> now, in MiB; null when it could not be read.</summary>
    [Id(7)] public long? MemoryAvailableMB { get; init; }

    /// <summary>The memory limits of its running sandboxes together, in MiB (for operators: placement does not filter on it).</summary>
    [Id(8)] public long MemoryPromisedMB { get; init; }

    /// <summary>Template ids and names the node can start from without building or fetching anything (<see cref="NodeTemplates"/>).</summary>
    [Id(9)] public ImmutableArray<string> Templates { get; init; } = [];

    /// <summary>Its warm pools (<c>--pool</c>) and their ready members.</summary>
    [Id(10)] public ImmutableArray<PoolReport> Pools { get; init; } = [];

    /// <summary>The isolation tiers that can start sandboxes on the node.</summary>
    [Id(11)] public ImmutableArray<string> Tiers { get; init; } = [];

    /// <summary>Tiers the node knows but cannot run, each with why (what to install).</summary>
    [Id(12)] public ImmutableDictionary<string, string> UnavailableTiers { get; init; } = ImmutableDictionary<string, string>.Empty;

    /// <summary>The tier its sandboxes get when nobody chose one (<c>--isolation</c>).</summary>
    [Id(13)] public string? DefaultTier { get; init; }

    /// <summary>Its <c>--cpus</c>: the CPUs of a create that names none (and of its pool members).</summary>
    [Id(14)] public int DefaultCpuCount { get; init; }

    /// <summary>Its <c>--memory-mb</c>.</summary>
    [Id(15)] public int DefaultMemoryMB { get; init; }

    /// <summary>Its <c>--disk-mb</c>.</summary>
    [Id(16)] public int DefaultDiskSizeMB { get; init; }
}

/// <summary>One warm pool of a node: <see cref="TemplateId"/> and <see cref="Isolation"/> are known once a member started.</summary>
[GenerateSerializer, Immutable]
internal sealed record PoolReport
{
    /// <summary>The name the pool was configured with (<c>--pool NAME=SIZE</c>): a template id or alias.</summary>
    [Id(0)] public required string Pool { get; init; }

    [Id(1)] public string? TemplateId { get; init; }

    [Id(2)] public string? Isolation { get; init; }

    /// <summary>Members ready to be claimed now.</summary>
    [Id(3)] public required int Ready { get; init; }
}

[NodePlacement]
internal sealed class NodeGrain(SandboxManager sandboxes, TeamDirectory teams, DaemonOptions options, ILocalSiloDetails silo,
    IIsolationTiers tiers, WarmPools pools, NodeTemplates templates, Templates.TemplateRegistry registry, ILogger<NodeGrain> logger) : Grain, INodeGrain
{
    public Task<bool> RemoveLayerCopyAsync(string layer)
    {
        SelfKey();
        return registry.RemoveCopyAsync(layer, CancellationToken.None);
    }

    public Task<NodeReport> GetReportAsync()
    {
        var key = SelfKey();
        // Promised, not measured: the sum of what its sandboxes were given is known from memory at no cost, while a
        // measured CPU share needs two samples of /proc/stat and, on a node of idle sandboxes, says nothing of what
        // they may use the next second. Both are overcommitted by design (a quota or a limit per sandbox, no
        // reservation), so placement scores with them and filters only on what a node cannot give at all.
        var cpus = 0;
        long memory = 0;
        foreach (var sandbox in sandboxes.Running)
        {
            cpus += sandbox.CpuCount;
            memory += sandbox.MemoryMB;
        }
        return Task.FromResult(new NodeReport
        {
            NodeId = key,
            SiloAddress = silo.SiloAddress.ToParsableString(),
            Reserved = sandboxes.Reserved,
            MaxSandboxes = options.MaxSandboxes,
            Cpus = Environment.ProcessorCount,
            CpusPromised = cpus,
            MemoryTotalMB = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024 * 1024),
            MemoryAvailableMB = HostMemory.AvailableMB(),
            MemoryPromisedMB = memory,
            Templates = templates.Present,
            Pools = [.. pools.Status.Select(p => new PoolReport { Pool = p.Pool, TemplateId = p.TemplateId, Isolation = p.Isolation, Ready = p.Ready })],
            Tiers = [.. tiers.Names.Where(t => tiers.UnavailableReason(t) is null)],
            UnavailableTiers = tiers.Names.Select(t => (Name: t, Reason: tiers.UnavailableReason(t)))
                .Where(t => t.Reason is not null).ToImmutableDictionary(t => t.Name, t => t.Reason!, StringComparer.Ordinal),
            DefaultTier = tiers.DefaultTier,
            DefaultCpuCount = options.DefaultCpuCount,
            DefaultMemoryMB = options.DefaultMemoryMB,
            DefaultDiskSizeMB = options.DefaultDiskSizeMB,
        });
    }

    public async Task<bool> ReloadTeamsAsync()
    {
        SelfKey();
        try
        {
            await teams.ReloadAsync(CancellationToken.None);
            return true;
        }
        catch (Exception ex) when (ex is DbException or IOException or TimeoutException)
        {
            // An answer, not an exception: the caller's change succeeded, and what failed is this node's read.
            ClusterLog.TeamReloadFailed(logger, ex);
            return false;
        }
    }

    private string SelfKey()
    {
        var key = this.GetPrimaryKeyString();
        if (!string.Equals(key, options.Cluster?.NodeId, StringComparison.Ordinal))
        {
            // Only a placement bug could bring this here; answering would report another host's state as this one's.
            throw new InvalidOperationException($"the grain of node '{key}' was activated on node '{options.Cluster?.NodeId}'");
        }
        return key;
    }
}

/// <summary>The host's memory as the kernel counts it.</summary>
internal static class HostMemory
{
    /// <summary>
    /// <c>MemAvailable</c> of /proc/meminfo in MiB (free memory plus what the kernel can reclaim without swapping: the
    /// figure "how much can a new sandbox get"), or null when unreadable. One read of a 1.5 KB procfs file.
    /// </summary>
    public static long? AvailableMB()
    {
        try
        {
            return ParseAvailableMB(File.ReadAllText("/proc/meminfo"));
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The <c>MemAvailable:</c> line of a /proc/meminfo text (in kB there) in MiB, or null when it has none.</summary>
    public static long? ParseAvailableMB(string meminfo)
    {
        foreach (var line in meminfo.AsSpan().EnumerateLines())
        {
            if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal))
            {
                continue;
            }
            var value = line["MemAvailable:".Length..].Trim();
            if (value.EndsWith("kB", StringComparison.Ordinal))
            {
                value = value[..^2].TrimEnd();
            }
            return long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var kb) ? kb / 1024 : null;
        }
        return null;
    }
}
