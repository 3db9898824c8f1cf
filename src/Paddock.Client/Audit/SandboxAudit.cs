using System.Runtime.CompilerServices;
using System.Text.Json.Serialization;
using Paddock.Client.Api;

namespace Paddock.Client;

/// <summary>
/// One entry of a sandbox's audit trail (a Paddock extension): what was done through the sandbox's agent, as the
/// daemon's proxy saw it. <see cref="Kind"/> says which fields are set: process.start / process.end, pty.open /
/// pty.close, file.write, file.move, file.remove, net.connect (an outbound connection attempt, seen by the host's
/// netfilter) and net.close (the end of an allowed connection, with its bytes).
/// </summary>
public sealed class SandboxAuditEvent
{
    /// <summary>Position in the trail; pass the last one seen as <c>after</c> to continue.</summary>
    [JsonPropertyName("seq")] public long Seq { get; init; }

    /// <summary>When the daemon saw it.</summary>
    [JsonPropertyName("at")] public DateTimeOffset At { get; init; }

    /// <summary>What happened.</summary>
    [JsonPropertyName("kind")] public string Kind { get; init; } = "";

    /// <summary>The process id in the sandbox.</summary>
    [JsonPropertyName("pid")] public int? Pid { get; init; }

    /// <summary>The command started.</summary>
    [JsonPropertyName("cmd")] public string? Cmd { get; init; }

    /// <summary>Its arguments.</summary>
    [JsonPropertyName("args")] public IReadOnlyList<string>? Args { get; init; }

    /// <summary>The user the call asked for; null: the sandbox's default user.</summary>
    [JsonPropertyName("user")] public string? User { get; init; }

    /// <summary>The working directory asked for.</summary>
    [JsonPropertyName("cwd")] public string? Cwd { get; init; }

    /// <summary>Names of the environment variables the call set (never their values).</summary>
    [JsonPropertyName("envNames")] public IReadOnlyList<string>? EnvNames { get; init; }

    /// <summary>The process's tag.</summary>
    [JsonPropertyName("tag")] public string? Tag { get; init; }

    /// <summary>The exit code of a process that exited.</summary>
    [JsonPropertyName("exitCode")] public int? ExitCode { get; init; }

    /// <summary>How it ended, or why its end is unknown.</summary>
    [JsonPropertyName("status")] public string? Status { get; init; }

    /// <summary>The file written or removed, or the source of a rename.</summary>
    [JsonPropertyName("path")] public string? Path { get; init; }

    /// <summary>The new path of a rename.</summary>
    [JsonPropertyName("destination")] public string? Destination { get; init; }

    /// <summary>What the agent answered a file call.</summary>
    [JsonPropertyName("httpStatus")] public int? HttpStatus { get; init; }

    /// <summary>Outbound connections: the destination address.</summary>
    [JsonPropertyName("address")] public string? Address { get; init; }

    /// <summary>Outbound connections: the destination port (absent for ICMP).</summary>
    [JsonPropertyName("port")] public int? Port { get; init; }

    /// <summary>Outbound connections: tcp, udp, icmp, or the IP protocol number.</summary>
    [JsonPropertyName("protocol")] public string? Protocol { get; init; }

    /// <summary>Outbound connections: allowed, denied, or proxied (sent to the egress proxy, which checks the name).</summary>
    [JsonPropertyName("verdict")] public string? Verdict { get; init; }

    /// <summary>At a connection's end (net.close): bytes both ways.</summary>
    [JsonPropertyName("bytes")] public long? Bytes { get; init; }

    /// <summary>At a connection's end: bytes the sandbox sent.</summary>
    [JsonPropertyName("bytesOut")] public long? BytesOut { get; init; }

    /// <summary>At a connection's end: bytes the sandbox received.</summary>
    [JsonPropertyName("bytesIn")] public long? BytesIn { get; init; }

    /// <summary>At a connection's end: how long it lasted, in milliseconds.</summary>
    [JsonPropertyName("durationMs")] public long? DurationMs { get; init; }

    /// <summary>Set when the daemon could not read the call.</summary>
    [JsonPropertyName("note")] public string? Note { get; init; }
}

/// <summary>A page of a sandbox's audit trail.</summary>
public sealed class SandboxAuditPage
{
    /// <summary>The events, oldest first.</summary>
    [JsonPropertyName("events")] public IReadOnlyList<SandboxAuditEvent> Events { get; init; } = [];

    /// <summary>The cursor for the next page: the last seq returned (or the one asked after).</summary>
    [JsonPropertyName("next")] public long Next { get; init; }

    /// <summary>Events of this sandbox not kept (past the daemon's bound per sandbox, or lost under load).</summary>
    [JsonPropertyName("dropped")] public long Dropped { get; init; }

    /// <summary>Where the dropped events were: after this seq (the kept head of the trail).</summary>
    [JsonPropertyName("droppedAfterSeq")] public long? DroppedAfterSeq { get; init; }
}

/// <summary>Reads audit trails (GET /sandboxes/{id}/audit).</summary>
public static class SandboxAudit
{
    /// <summary>One page of the trail after <paramref name="after"/> (0: from the start), at most <paramref name="limit"/> events.</summary>
    public static async Task<SandboxAuditPage> GetAsync(string sandboxId, long after = 0, int? limit = null, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sandboxId);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        return await api.GetAuditAsync(sandboxId, after, limit, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The whole trail, then (with <paramref name="follow"/>) new events as they come, polling every
    /// <paramref name="pollInterval"/> (default 1 s) until the sandbox has ended and nothing new came, or cancellation.
    /// </summary>
    public static async IAsyncEnumerable<SandboxAuditEvent> ReadAsync(string sandboxId, bool follow = false, TimeSpan? pollInterval = null,
        ConnectionOptions? connection = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sandboxId);
        var resolved = (connection ?? new ConnectionOptions()).Resolve();
        using var api = new ApiClient(resolved);
        long after = 0;
        while (true)
        {
            var page = await api.GetAuditAsync(sandboxId, after, null, cancellationToken).ConfigureAwait(false);
            foreach (var e in page.Events)
            {
                yield return e;
            }
            after = page.Next;
            if (page.Events.Count > 0)
            {
                continue;
            }
            if (!follow)
            {
                yield break;
            }
            // Still running? A killed sandbox's trail is complete once a read after the kill came back empty.
            bool ended;
            try
            {
                await api.GetSandboxAsync(sandboxId, cancellationToken).ConfigureAwait(false);
                ended = false;
            }
            catch (SandboxNotFoundException)
            {
                ended = true;
            }
            if (ended)
            {
                var last = await api.GetAuditAsync(sandboxId, after, null, cancellationToken).ConfigureAwait(false);
                foreach (var e in last.Events)
                {
                    yield return e;
                }
                if (last.Events.Count == 0)
                {
                    yield break;
                }
                after = last.Next;
                continue;
            }
            await Task.Delay(pollInterval ?? TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
        }
    }
}
