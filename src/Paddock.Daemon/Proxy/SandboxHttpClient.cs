using System.Diagnostics;
using System.Globalization;
using System.Net;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Proxy;

/// <summary>
/// The one outbound HTTP client of the proxy. Its connections are not TCP to an address but streams from
/// <see cref="Runtimes.ISandboxRuntime.ConnectAsync"/>, plugged in through <see cref="SocketsHttpHandler.ConnectCallback"/>.
/// The sandbox and port travel in the request URI's authority (<c>{id}.sandbox:{port}</c>), so the handler's pool keeps
/// connections per sandbox port and the callback needs nothing else to know where to connect.
/// </summary>
internal sealed class SandboxHttpClient : IDisposable
{
    private const string HostSuffix = ".sandbox";

    private readonly IdleFreezer? _freezer;

    public SandboxHttpClient(SandboxManager manager, IdleFreezer? freezer = null)
    {
        _freezer = freezer;
        var handler = new SocketsHttpHandler
        {
            // The settings YARP recommends for a forwarder's client: no proxy, redirects, decompression or cookies of its own.
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            ActivityHeadersPropagator = new Yarp.ReverseProxy.Forwarder.ReverseProxyPropagator(DistributedContextPropagator.Current),
            ConnectTimeout = TimeSpan.FromSeconds(15),
            // A sandbox that is killed takes its connections with it; idle ones should not linger long. Kept below the
            // agent's Kestrel keep-alive (130 s) also for the idle freezer: Kestrel's clock runs on while a sandbox is
            // frozen, so a connection it had idle past 130 s would be closed by its first heartbeat after the thaw,
            // under the request that thawed it; at 30 s the pool has dropped such a connection long before.
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
            ConnectCallback = async (context, cancellationToken) =>
            {
                var sandboxId = SandboxIdFromHost(context.DnsEndPoint.Host);
                // A connect to a sandbox that ends meanwhile gives up then (a gVisor sandbox's dead address never answers).
                using var ended = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, manager.RunningToken(sandboxId));
                return await manager.ConnectToPortAsync(sandboxId, context.DnsEndPoint.Port, ended.Token);
            },
        };
        Invoker = new HttpMessageInvoker(freezer is { Enabled: true } ? new AwakeHandler(freezer, handler) : handler, disposeHandler: true);
    }

    /// <summary>
    /// Keeps <paramref name="sandboxId"/> awake (see <see cref="IdleFreezer"/>) until the lease is disposed: for a call
    /// whose response is read after <see cref="HttpMessageInvoker.SendAsync"/> returns (a command's output stream).
    /// </summary>
    public ValueTask<IdleFreezer.Lease> HoldAwakeAsync(string sandboxId, CancellationToken cancellationToken) =>
        _freezer?.HoldAwakeAsync(sandboxId, cancellationToken) ?? ValueTask.FromResult(default(IdleFreezer.Lease));

    public HttpMessageInvoker Invoker { get; }

    /// <summary>The destination prefix the forwarder is given for <paramref name="target"/>.</summary>
    /// <remarks>A resumed sandbox's authority names its incarnation (<c>{id}.i{n}.sandbox</c>): <see cref="SandboxIncarnations"/> says why.</remarks>
    public static string DestinationPrefix(SandboxTarget target) => SandboxIncarnations.Of(target.SandboxId) is var n and > 0
        ? string.Create(CultureInfo.InvariantCulture, $"http://{target.SandboxId}{IncarnationMark}{n}{HostSuffix}:{target.Port}/")
        : string.Create(CultureInfo.InvariantCulture, $"http://{target.SandboxId}{HostSuffix}:{target.Port}/");

    private const string IncarnationMark = ".i";

    internal static string SandboxIdFromHost(string host)
    {
        if (!host.EndsWith(HostSuffix, StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"'{host}' is not a sandbox authority");
        }
        var name = host[..^HostSuffix.Length];
        // Sandbox ids have no dots (SandboxIds), so the incarnation mark is the last dot's.
        var mark = name.LastIndexOf(IncarnationMark, StringComparison.Ordinal);
        return mark > 0 ? name[..mark] : name;
    }

    public void Dispose() => Invoker.Dispose();

    /// <summary>
    /// The floor under every caller of this client: no request reaches a frozen sandbox, as the sandbox is thawed
    /// before it is sent. It holds the sandbox awake only until the response headers; a caller that streams the
    /// body (the proxy, build commands) holds its own lease around the whole exchange.
    /// </summary>
    private sealed class AwakeHandler(IdleFreezer freezer, HttpMessageHandler inner) : DelegatingHandler(inner)
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            using var awake = await freezer.HoldAwakeAsync(SandboxIdFromHost(request.RequestUri!.Host), cancellationToken);
            return await base.SendAsync(request, cancellationToken);
        }
    }
}
