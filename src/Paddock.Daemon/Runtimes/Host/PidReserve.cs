using System.Globalization;
using Microsoft.Extensions.Logging;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// Keeps pids for the agent that the sandbox's own processes cannot take (issue 5: a fork flood that held every pid
/// of the sandbox killed the agent, because pids.max counts the agent's threads and .NET dies when it cannot create
/// one). In the pids hierarchy the sandbox's cgroup S gets pids.max = limit + 1 + <see cref="AgentThreads"/> (through
/// the OCI spec, <see cref="SandboxLimit"/>) and a child cgroup S/<see cref="WorkCgroup"/> gets limit + 1; the agent's
/// spawn thread (Paddock.Agent's SpawnThread, comm <see cref="SpawnThreadName"/>) is moved into S/work, so every
/// process it starts, and everything those start, is counted there, while the agent's other threads stay in S.
/// </summary>
/// <remarks>
/// On cgroup v1 (FACTS.md: this host's pids controller is a v1 hierarchy) a thread can be in another cgroup than its
/// process (its TID written to <c>tasks</c>); on v2 only in a threaded subtree (S/work is made <c>threaded</c>, the TID
/// written to <c>cgroup.threads</c>; see <see cref="UnifiedCgroups.CreateThreadCgroup"/>). On both a child starts in
/// the cgroup of the thread that created it. Both were checked on this kernel (6.18) with a Python thread moved into a child cgroup: its children
/// were charged to the child cgroup and failed with EAGAIN at its pids.max while the main thread still created threads.
/// The daemon (host root) moves the thread rather than the agent itself: the agent then needs no descriptor of a host
/// cgroup directory, which the sandbox's root could otherwise use to move its processes out of S/work.
/// The +1 is the spawn thread itself, which S/work counts: the sandbox's processes get exactly the limit.
/// </remarks>
internal static partial class PidReserve
{
    /// <summary>
    /// Pids kept for the agent's own threads: the .NET runtime's (GC, finalizer, signal and socket threads) and the
    /// thread pool's, which grows under load. About 20 are in use at rest; the rest is head room for a busy pool.
    /// </summary>
    public const int AgentThreads = 64;

    /// <summary>The child cgroup (pids hierarchy only) that holds the sandbox's processes.</summary>
    public const string WorkCgroup = "work";

    /// <summary>The comm of the agent's spawn thread (Paddock.Agent.Processes.SpawnThread.Name).</summary>
    public const string SpawnThreadName = "paddock-spawn";

    /// <summary>The pids limit of the sandbox's own cgroup, as the OCI spec gives it to runc.</summary>
    public static long SandboxLimit(int maxPids) => maxPids > 0 ? WorkLimit(maxPids) + AgentThreads : maxPids;

    /// <summary>The pids limit of S/work: the sandbox's processes plus the spawn thread.</summary>
    public static long WorkLimit(int maxPids) => maxPids + 1L;

    /// <summary>
    /// Creates S/work with its limit and moves the agent's spawn thread there. Call once the agent answered /health
    /// (the agent names the thread before it listens) and before any command of the sandbox runs. When the agent has
    /// no spawn thread (an agent binary from before the reserve) the work cgroup is removed again and S gets the
    /// plain limit, the behaviour before the reserve; the sandbox works, with no reserve. Returns whether the reserve
    /// is in place.
    /// </summary>
    public static bool Apply(ISandboxCgroups cgroups, string sandboxId, int agentPid, int maxPids, ILogger logger)
    {
        var sandbox = cgroups.PidsDirectory(sandboxId);
        if (sandbox is null || maxPids <= 0)
        {
            return false; // no pids hierarchy, or no limit: nothing to reserve
        }
        var work = Path.Combine(sandbox, WorkCgroup);
        cgroups.CreateThreadCgroup(work);
        File.WriteAllText(Path.Combine(work, "pids.max"), WorkLimit(maxPids).ToString(CultureInfo.InvariantCulture));
        var tid = FindThread(agentPid, SpawnThreadName);
        if (tid is null)
        {
            System.IO.Directory.Delete(work);
            File.WriteAllText(Path.Combine(sandbox, "pids.max"), maxPids.ToString(CultureInfo.InvariantCulture));
            NoSpawnThread(logger, sandboxId, agentPid);
            return false;
        }
        cgroups.MoveThread(work, tid.Value);
        return true;
    }

    /// <summary>The host TID of <paramref name="pid"/>'s thread named <paramref name="comm"/>, or null.</summary>
    public static int? FindThread(int pid, string comm)
    {
        try
        {
            foreach (var task in System.IO.Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                try
                {
                    if (File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n') == comm)
                    {
                        return int.Parse(Path.GetFileName(task), CultureInfo.InvariantCulture);
                    }
                }
                catch (IOException)
                {
                    // the thread ended between the listing and the read
                }
            }
        }
        catch (IOException)
        {
            // the process is gone
        }
        return null;
    }

    [LoggerMessage(3060, LogLevel.Warning, "Sandbox {SandboxId}: the agent (pid {AgentPid}) has no spawn thread; no pid reserve, the agent's threads count against the sandbox's pids limit (an agent binary from before issue 5?)")]
    private static partial void NoSpawnThread(ILogger logger, string sandboxId, int agentPid);
}
