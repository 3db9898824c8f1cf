namespace Paddock.Daemon.Cluster;

/// <summary>Cluster mode's log lines (event ids 1700-1719: issue 17).</summary>
internal static partial class ClusterLog
{
    [LoggerMessage(EventId = 1700, Level = LogLevel.Information, Message = "cluster mode: node {NodeId}, silo {Address}:{Port}, cluster {ClusterId}")]
    public static partial void Joining(ILogger logger, string nodeId, string address, int port, string clusterId);

    [LoggerMessage(EventId = 1701, Level = LogLevel.Information, Message = "cluster membership: {Members}")]
    public static partial void Membership(ILogger logger, string members);

    [LoggerMessage(EventId = 1702, Level = LogLevel.Warning, Message = "node {NodeId} (silo {Silo}) was declared dead: {Count} of its sandboxes marked lost")]
    public static partial void NodeLost(ILogger logger, string nodeId, string silo, int count);

    [LoggerMessage(EventId = 1703, Level = LogLevel.Information, Message = "node {NodeId}'s old silo {Silo} is dead, but the node is back as {Current}: it reconciles its own sandboxes")]
    public static partial void NodeRestarted(ILogger logger, string nodeId, string silo, string current);

    [LoggerMessage(EventId = 1704, Level = LogLevel.Error, Message = "could not mark the sandboxes of dead node {NodeId} lost (retried while the store is unreachable)")]
    public static partial void MarkLostFailed(ILogger logger, string nodeId, Exception error);

    [LoggerMessage(EventId = 1705, Level = LogLevel.Information, Message = "Forwarding {Method} {Path} for sandbox {SandboxId} to its node at {Owner} failed: {Error}")]
    public static partial void ForwardFailed(ILogger logger, string method, string path, string sandboxId, string owner, string error, Exception? exception);

    [LoggerMessage(EventId = 1706, Level = LogLevel.Information, Message = "node {NodeId} registered its API at {ApiUrl}")]
    public static partial void Registered(ILogger logger, string nodeId, string apiUrl);

    [LoggerMessage(EventId = 1707, Level = LogLevel.Warning, Message = "node {NodeId} did not reload teams and API keys after a change through this node ({Error}); it catches up by its periodic reload within {Period}")]
    public static partial void TeamReloadNotAnswered(ILogger logger, string nodeId, string error, TimeSpan period, Exception? exception);

    [LoggerMessage(EventId = 1708, Level = LogLevel.Warning, Message = "the periodic reload of teams and API keys from the store failed; the keys loaded before stay in force")]
    public static partial void TeamRefreshFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1709, Level = LogLevel.Information, Message = "the periodic reload of teams and API keys works again")]
    public static partial void TeamRefreshRecovered(ILogger logger);

    [LoggerMessage(EventId = 1710, Level = LogLevel.Warning, Message = "another node changed teams or API keys, and this node could not reload them from the store; its periodic reload tries again")]
    public static partial void TeamReloadFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1711, Level = LogLevel.Warning, Message = "the node at {ApiUrl} did not answer the metrics listing for its {Count} sandboxes ({Error}); they are left out of the answer")]
    public static partial void MetricsNotAnswered(ILogger logger, string apiUrl, int count, string error, Exception? exception);

    // 1716-1719: a node cut off from the cluster, and the store unreachable (issue 17's failure cases); numbered from
    // the top of the range, away from the ids other cluster work adds.
    [LoggerMessage(EventId = 1716, Level = LogLevel.Debug, Message = "the store cannot be reached to look up the node of sandbox {SandboxId}: forwarded to {NodeId}, its node when last looked up (a sandbox never changes node)")]
    public static partial void OwnerFromStaleCache(ILogger logger, string sandboxId, string nodeId);

    [LoggerMessage(EventId = 1717, Level = LogLevel.Critical, Message = "node {NodeId} was declared dead by the cluster and is no longer a member ({Context}); its API and proxy now answer 503 and its sandboxes are being destroyed; restart it to rejoin")]
    public static partial void Evicted(ILogger logger, string nodeId, string context, Exception? exception);

    [LoggerMessage(EventId = 1718, Level = LogLevel.Warning, Message = "node {NodeId}, declared dead by the cluster, destroyed {Destroyed} of its {Count} sandboxes")]
    public static partial void EvictedSandboxesDestroyed(ILogger logger, string nodeId, int destroyed, int count);

    [LoggerMessage(EventId = 1719, Level = LogLevel.Error, Message = "sandbox {SandboxId} of a node declared dead could not be ended cleanly")]
    public static partial void EvictedKillFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(EventId = 1731, Level = LogLevel.Information, Message = "a create placed on node {NodeId} lost the race for its last sandbox slot (nothing was created there); placed once more: on {RetryNodeId}")]
    public static partial void CreateRetried(ILogger logger, string nodeId, string retryNodeId);
}
