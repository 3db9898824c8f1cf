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
}

internal delegate ValueTask<TResponse> UnaryHandler<TRequest, TResponse>(TRequest request, ConnectCallContext context);

internal delegate Task ServerStreamHandler<TRequest, TResponse>(TRequest request, IStreamWriter<TResponse> writer, ConnectCallContext context);

internal delegate ValueTask<TResponse> ClientStreamHandler<TRequest, TResponse>(IAsyncEnumerable<TRequest> requests, ConnectCallContext context);
