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

    public SandboxHttpClient(SandboxManager manager)
    {
        var handler = new SocketsHttpHandler
        {
            // The settings YARP recommends for a forwarder's client: no proxy, redirects, decompression or cookies of its own.
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            ActivityHeadersPropagator = new Yarp.ReverseProxy.Forwarder.ReverseProxyPropagator(DistributedContextPropagator.Current),
            ConnectTimeout = TimeSpan.FromSeconds(15),
            // A sandbox that is killed takes its connections with it; idle ones should not linger long.
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
            ConnectCallback = async (context, cancellationToken) =>
            {
                var sandboxId = SandboxIdFromHost(context.DnsEndPoint.Host);
                return await manager.ConnectToPortAsync(sandboxId, context.DnsEndPoint.Port, cancellationToken);
            },
        };
        Invoker = new HttpMessageInvoker(handler, disposeHandler: true);
    }

    public HttpMessageInvoker Invoker { get; }

    /// <summary>The destination prefix the forwarder is given for <paramref name="target"/>.</summary>
    public static string DestinationPrefix(SandboxTarget target) =>
        string.Create(CultureInfo.InvariantCulture, $"http://{target.SandboxId}{HostSuffix}:{target.Port}/");

    internal static string SandboxIdFromHost(string host) =>
        host.EndsWith(HostSuffix, StringComparison.Ordinal)
            ? host[..^HostSuffix.Length]
            : throw new InvalidOperationException($"'{host}' is not a sandbox authority");

    public void Dispose() => Invoker.Dispose();
}
