using ModelContextProtocol;
using Paddock.Client;
using Paddock.Daemon.Auth;
using Paddock.Mcp;

namespace Paddock.Daemon.Mcp;

/// <summary>
/// paddockd's MCP endpoint, <c>/mcp</c> (Streamable HTTP): the tools of Paddock.Mcp, each call made with the caller's
/// own <c>X-API-Key</c> against this daemon's API on loopback, so that the key's team sees only its sandboxes and
/// every limit, check and log of the API applies as for any client. The key is checked before the endpoint is
/// reached (<see cref="ApiKeyMiddleware"/>): a bad key gets 401 and never an MCP session.
/// </summary>
/// <remarks>
/// Stateless: each POST is answered on its own, so that the key of each request is the one its tool calls use and
/// no MCP session outlives the HTTP exchange that made it. Nothing is lost by it: a sandbox's state lives in the
/// daemon, and the tools need no server-to-client requests.
/// </remarks>
internal static class McpEndpoint
{
    public const string Path = "/mcp";

    public static void AddPaddockMcpEndpoint(this IServiceCollection services)
    {
        services.AddHttpContextAccessor();
        services.AddSingleton(sp => new LoopbackAddress(sp.GetService<Tls.ServerCertificate>()));
        services.AddPaddockMcp(sp => new CallerConnectionSource(sp.GetRequiredService<IHttpContextAccessor>(), sp.GetRequiredService<LoopbackAddress>()))
            .WithHttpTransport(o => o.Stateless = true);
    }

    /// <summary>The caller's key and this daemon's loopback address, read from the request being served.</summary>
    private sealed class CallerConnectionSource(IHttpContextAccessor accessor, LoopbackAddress self) : IConnectionSource
    {
        public ConnectionOptions Current
        {
            get
            {
                var http = accessor.HttpContext ?? throw new McpException("no HTTP request is being served: the MCP endpoint of paddockd runs tools only within a request");
                var url = self.Url;
                return new ConnectionOptions
                {
                    ApiKey = http.Request.Headers[ApiKeyAuthenticator.HeaderName].ToString(),
                    ApiUrl = url,
                    SandboxUrl = url,
                    HttpHandler = self.Handler,
                    // A command's stream may outlast this; it bounds each request and stream start, as in the CLI.
                    RequestTimeout = TimeSpan.FromSeconds(60),
                };
            }
        }
    }
}

/// <summary>Where this daemon can be reached from itself: its first bound address, a wildcard one made loopback.</summary>
internal sealed class LoopbackAddress(Tls.ServerCertificate? certificate)
{
    private volatile Uri? _url;

    public Uri Url => _url ?? throw new InvalidOperationException("the daemon's address is not known before the listener is bound");

    /// <summary>
    /// With TLS, a handler that trusts exactly the certificate this daemon presents now: its own loopback address is
    /// not a name the certificate need carry (a real wildcard certificate names only the domain); null without TLS.
    /// </summary>
    public HttpMessageHandler? Handler { get; } = certificate is null ? null : new SocketsHttpHandler
    {
        PooledConnectionLifetime = TimeSpan.FromMinutes(2),
        SslOptions = new System.Net.Security.SslClientAuthenticationOptions
        {
            RemoteCertificateValidationCallback = (_, presented, _, _) =>
                presented is not null && presented.GetRawCertData().AsSpan().SequenceEqual(certificate.Current.RawData),
        },
    };

    public void Set(Uri bound)
    {
        var host = bound.Host switch
        {
            "0.0.0.0" or "+" or "*" => "127.0.0.1",
            "[::]" or "::" => "[::1]",
            var h => h,
        };
        _url = new UriBuilder(bound) { Host = host, Path = "/" }.Uri;
    }
}
