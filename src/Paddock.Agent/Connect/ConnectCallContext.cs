using Paddock.Agent.Users;

namespace Paddock.Agent.Connect;

/// <summary>What a Connect handler knows about the call it serves.</summary>
internal sealed class ConnectCallContext
{
    public ConnectCallContext(HttpContext http, AgentUser user, TimeSpan keepAliveInterval, CancellationToken cancellationToken)
    {
        Http = http;
        User = user;
        KeepAliveInterval = keepAliveInterval;
        CancellationToken = cancellationToken;
    }

    /// <summary>The HTTP exchange carrying the call.</summary>
    public HttpContext Http { get; }

    /// <summary>The user the call acts as: from <c>Authorization: Basic</c>, else the agent's default user.</summary>
    public AgentUser User { get; }

    /// <summary>How often a long stream sends a keepalive event (the client's <c>Keepalive-Ping-Interval</c> header, in seconds).</summary>
    public TimeSpan KeepAliveInterval { get; }

    /// <summary>Cancelled when the client goes away or the call's <c>Connect-Timeout-Ms</c> deadline passes.</summary>
    public CancellationToken CancellationToken { get; }
}

/// <summary>
/// The response side of a server stream. Safe to call from several tasks at once (data pumps and a keepalive timer):
/// writes are serialised and each message is flushed to the client.
/// </summary>
internal interface IStreamWriter<in T>
{
    ValueTask WriteAsync(T message, CancellationToken cancellationToken);

    /// <summary>
    /// Writes the stream's last message without a flush of its own: the end of the stream sends it with the
    /// end-of-stream message in one write to the connection, instead of two.
    /// </summary>
    ValueTask WriteFinalAsync(T message, CancellationToken cancellationToken);

    /// <summary>True when the stream speaks JSON (<c>application/connect+json</c>), false for protobuf.</summary>
    bool IsJson { get; }

    /// <summary>
    /// Writes a message the caller has encoded itself in the stream's codec, exactly <paramref name="length"/> bytes
    /// that <paramref name="encode"/> writes straight into the response. For messages the generic encoders handle
    /// badly: Google.Protobuf's JSON formatter builds a bytes field's base64 text as a string, and measured with
    /// bench/ it spent 20-30 ms of CPU per MiB of process output.
    /// </summary>
    ValueTask WriteEncodedAsync<TState>(int length, System.Buffers.SpanAction<byte, TState> encode, TState state, CancellationToken cancellationToken);
}

internal delegate ValueTask<TResponse> UnaryHandler<TRequest, TResponse>(TRequest request, ConnectCallContext context);

internal delegate Task ServerStreamHandler<TRequest, TResponse>(TRequest request, IStreamWriter<TResponse> writer, ConnectCallContext context);

internal delegate ValueTask<TResponse> ClientStreamHandler<TRequest, TResponse>(IAsyncEnumerable<TRequest> requests, ConnectCallContext context);
