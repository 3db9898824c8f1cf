using System.Text.Json.Serialization;

namespace Paddock.Daemon.Audit;

/// <summary>
/// One thing that happened to or in a sandbox, as the daemon saw it (never as the sandbox reports it: code inside the
/// sandbox can tamper with the agent, not with the daemon's proxy). <see cref="Kind"/> says which of the optional
/// fields are set; absent ones are left out of the JSON.
/// </summary>
internal sealed record AuditEvent
{
    /// <summary>Assigned by the store, increasing per daemon; the cursor for paging and following.</summary>
    public long Seq { get; init; }

    public required DateTimeOffset At { get; init; }

    /// <summary>One of <see cref="AuditKinds"/>.</summary>
    public required string Kind { get; init; }

    public int? Pid { get; init; }

    public string? Cmd { get; init; }

    public IReadOnlyList<string>? Args { get; init; }

    /// <summary>The user the call asked for (Basic authorization of the envd call); null: the sandbox's default user.</summary>
    public string? User { get; init; }

    public string? Cwd { get; init; }

    /// <summary>Names of the variables the call set; values are never recorded (they hold secrets).</summary>
    public IReadOnlyList<string>? EnvNames { get; init; }

    /// <summary>The SDK's tag of a process, if it set one.</summary>
    public string? Tag { get; init; }

    public int? ExitCode { get; init; }

    /// <summary>How a process ended (the agent's status text, e.g. "exit status 1", "signal: killed"), or why its end is unknown.</summary>
    public string? Status { get; init; }

    public string? Path { get; init; }

    /// <summary>For a rename: the new path (<see cref="Path"/> is the old one).</summary>
    public string? Destination { get; init; }

    /// <summary>The HTTP status the agent answered for a file call; an error is recorded as an attempt.</summary>
    public int? HttpStatus { get; init; }

    /// <summary>Outbound connections (<see cref="AuditKinds.Connection"/>, <see cref="AuditKinds.ConnectionEnd"/>): the destination address.</summary>
    public string? Address { get; init; }

    /// <summary>Outbound connections: the destination port (absent for protocols without ports, such as ICMP).</summary>
    public int? Port { get; init; }

    /// <summary>Outbound connections: "tcp", "udp", "icmp" or the IP protocol number.</summary>
    public string? Protocol { get; init; }

    /// <summary>
    /// Outbound connections: "allowed" or "denied" under the sandbox's egress policy, or "proxied" (ports 80/443 of a
    /// denied address sent to the egress proxy, which lets only the allowed names through).
    /// </summary>
    public string? Verdict { get; init; }

    /// <summary>At a connection's end: bytes both ways (<see cref="BytesOut"/> + <see cref="BytesIn"/>).</summary>
    public long? Bytes { get; init; }

    /// <summary>At a connection's end: bytes the sandbox sent (IP packets, as the host's conntrack counted them).</summary>
    public long? BytesOut { get; init; }

    /// <summary>At a connection's end: bytes the sandbox received.</summary>
    public long? BytesIn { get; init; }

    /// <summary>At a connection's end: how long it lasted, in milliseconds (absent when its start was not seen).</summary>
    public long? DurationMs { get; init; }

    /// <summary>Set when the daemon could not read the call (e.g. a compressed or oversized body): the call went through, unread.</summary>
    public string? Note { get; init; }
}

/// <summary>The kinds of audit events.</summary>
internal static class AuditKinds
{
    public const string ProcessStart = "process.start";
    public const string ProcessEnd = "process.end";
    public const string PtyOpen = "pty.open";
    public const string PtyClose = "pty.close";
    public const string FileWrite = "file.write";
    public const string FileMove = "file.move";
    public const string FileRemove = "file.remove";

    /// <summary>
    /// An outbound connection attempt as the host's netfilter saw it (Networking/ConnectionObserver): destination,
    /// port, protocol and verdict. Code in the sandbox can neither hide nor forge it.
    /// </summary>
    public const string Connection = "net.connect";

    /// <summary>The end of an allowed (or proxied) connection: its bytes each way and duration.</summary>
    public const string ConnectionEnd = "net.close";
}

/// <summary>A page of a sandbox's audit trail.</summary>
internal sealed record AuditPage(
    [property: JsonPropertyName("sandboxID")] string SandboxId,
    [property: JsonPropertyName("events")] IReadOnlyList<AuditEvent> Events,
    [property: JsonPropertyName("next")] long? Next,
    [property: JsonPropertyName("dropped")] long Dropped,
    [property: JsonPropertyName("droppedAfterSeq")] long? DroppedAfterSeq);

/// <summary>The audit JSON: camelCase, absent fields omitted.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(AuditEvent))]
[JsonSerializable(typeof(AuditPage))]
internal sealed partial class AuditJsonContext : JsonSerializerContext;
