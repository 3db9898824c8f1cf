using Google.Protobuf;
using Paddock.Client.Http;
using Paddock.Envd.Connect;

namespace Paddock.Client.Envd;

/// <summary>Everything that talks to envd in one sandbox: the Connect services and plain HTTP <c>/files</c>.</summary>
internal sealed class EnvdClient : IDisposable
{
    /// <summary>How often envd should send keepalive events on long streams (E2B's SDK: 50 s).</summary>
    public const int KeepAliveSeconds = 50;

    public EnvdClient(ResolvedConnection connection, EnvdEndpoint endpoint)
    {
        Connection = connection;
        Endpoint = endpoint;
        Http = HttpTransport.CreateClient(connection);
        Rpc = new ConnectRpcClient(Http, endpoint);
    }

    public ResolvedConnection Connection { get; }

    public EnvdEndpoint Endpoint { get; }

    public HttpClient Http { get; }

    public ConnectRpcClient Rpc { get; }

    public string SandboxId => Endpoint.SandboxId;

    public TimeSpan RequestTimeout(TimeSpan? perCall) => perCall ?? Connection.RequestTimeout;

    /// <summary>A unary call whose Connect errors come out as the SDK's exceptions.</summary>
    public async Task<TResponse> UnaryAsync<TRequest, TResponse>(string method, TRequest request, MessageParser<TResponse> parser, string? user, TimeSpan? requestTimeout, string what, CancellationToken cancellationToken)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        try
        {
            return await Rpc.UnaryAsync(method, request, new CallOptions(RequestTimeout(requestTimeout), user), parser, cancellationToken).ConfigureAwait(false);
        }
        catch (ConnectException ex)
        {
            throw EnvdErrors.From(ex, SandboxId, what);
        }
    }

    public void Dispose() => Http.Dispose();
}
