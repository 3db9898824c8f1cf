using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using Paddock.Daemon.Api;
using Paddock.Daemon.Sandboxes;
using Yarp.ReverseProxy.Forwarder;

namespace Paddock.Daemon.Proxy;

/// <summary>
/// Sandbox traffic on the daemon's listener: requests routed by <see cref="SandboxRouting"/> go through YARP's
/// <see cref="IHttpForwarder"/> to the sandbox (the agent's port or any other), WebSocket upgrades and streamed bodies
/// included; everything else continues to the control plane. The agent checks its own access token, so
/// <c>X-Access-Token</c> is passed through untouched; the traffic token of sandboxes created with
/// <c>allowPublicTraffic: false</c> is checked here, for every port but the agent's.
/// </summary>
internal sealed class SandboxProxyMiddleware(
    RequestDelegate next,
    IHttpForwarder forwarder,
    SandboxManager manager,
    SandboxDomain domain,
    SandboxHttpClient client,
    IdleFreezer freezer,
    ILogger<SandboxProxyMiddleware> logger)
{
    /// <summary>E2B's header for the traffic access token (packages/js-sdk/tests/sandbox/network.test.ts).</summary>
    public const string TrafficTokenHeader = "e2b-traffic-access-token";

    private static readonly ForwarderRequestConfig RequestConfig = new()
    {
        // HTTP/1.1 to the sandbox: plain TCP without TLS, and WebSocket upgrades need it.
        Version = HttpVersion.Version11,
        VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        // Long-lived streams (a command's output, a pty) may be quiet for a while; the agent pings, other servers may not.
        ActivityTimeout = TimeSpan.FromMinutes(30),
    };

    public async Task InvokeAsync(HttpContext http)
    {
        var route = SandboxRouting.Route(http.Request, domain.HostName);
        SandboxTarget target;
        switch (route.Kind)
        {
            case SandboxRouting.Kind.ControlPlane when SignedFileUrls.IsSignedFileRequest(http.Request):
                // A signed file URL without routing (E2B_SANDBOX_URL's form): its signature names the sandbox.
                if (SignedFileUrls.FindSandbox(http.Request, manager.Running) is not { } signedBy)
                {
                    // envd's answer to a signature that no token made (packages/envd/internal/api/auth.go).
                    http.Response.StatusCode = StatusCodes.Status401Unauthorized;
                    http.Response.ContentType = "application/json";
                    await http.Response.WriteAsync("{\"code\":401,\"message\":\"invalid signature\"}", http.RequestAborted);
                    return;
                }
                target = new SandboxTarget(signedBy, SandboxManager.AgentPort);
                break;
            case SandboxRouting.Kind.ControlPlane:
                await next(http);
                return;
            case SandboxRouting.Kind.Invalid:
                await WriteErrorAsync(http, StatusCodes.Status400BadRequest, route.Error!, "", null);
                return;
            default:
                target = route.Target;
                break;
        }

        if (manager.TryGetPaused(target.SandboxId, out var paused))
        {
            if (!paused.AutoResume || !TrafficTokenAccepted(http, paused, target))
            {
                ProxyLog.PausedSandbox(logger, target.SandboxId, http.Request.Method, http.Request.Path);
                // E2B's envd /health through its proxy answers 502 for a paused sandbox: the SDKs' isRunning() reads that.
                await WriteErrorAsync(http, StatusCodes.Status502BadGateway,
                    $"sandbox '{target.SandboxId}' is paused; connect to it (POST /v2/sandboxes/{target.SandboxId}/connect) to resume it", target.SandboxId, target.Port);
                return;
            }
            // autoResume (E2B's lifecycle): the first request resumes it, then is served; concurrent ones share the resume.
            try
            {
                await manager.ConnectOrResumeAsync(target.SandboxId, null, Store.TeamLimits.None, http.RequestAborted);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                ProxyLog.AutoResumeFailed(logger, target.SandboxId, ex);
                await WriteErrorAsync(http, StatusCodes.Status502BadGateway, $"sandbox '{target.SandboxId}' is paused and could not be resumed: {ex.Message}", target.SandboxId, target.Port);
                return;
            }
        }
        if (!manager.TryGetRunning(target.SandboxId, out var record))
        {
            ProxyLog.UnknownSandbox(logger, target.SandboxId, http.Request.Method, http.Request.Path);
            // 502 is what E2B's proxy answers for a sandbox that is not there; the SDKs read it as "not running".
            await WriteErrorAsync(http, StatusCodes.Status502BadGateway, $"sandbox '{target.SandboxId}' not found (never created, killed or timed out)", target.SandboxId, target.Port);
            return;
        }
        if (!TrafficTokenAccepted(http, record, target))
        {
            ProxyLog.TrafficTokenRefused(logger, http.Request.Method, http.Request.Path, target.SandboxId, target.Port);
            await WriteErrorAsync(http, StatusCodes.Status403Forbidden,
                $"sandbox '{target.SandboxId}' requires its traffic access token in the {TrafficTokenHeader} header", target.SandboxId, target.Port);
            return;
        }

        // The exchange ends when the sandbox does (killed, lost, paused), whatever its connection does then.
        var running = manager.RunningToken(target.SandboxId);
        if (!running.CanBeCanceled)
        {
            // It stopped running since the look above.
            await WriteErrorAsync(http, StatusCodes.Status502BadGateway, $"sandbox '{target.SandboxId}' ended before the request could be forwarded", target.SandboxId, target.Port);
            return;
        }
        ForwarderError error;
        // Awake for the whole exchange: SendAsync returns once the response (a command's output, a watch stream, a
        // WebSocket) has been streamed to the end, so a long stream is never frozen under its client.
        using (await freezer.HoldAwakeAsync(target.SandboxId, http.RequestAborted))
        {
            var exchange = new ExchangeTransformer(running);
            error = await forwarder.SendAsync(http, SandboxHttpClient.DestinationPrefix(target), client.Invoker, RequestConfig, exchange, running);
            if (error == ForwarderError.None)
            {
                error = exchange.BodyError;
            }
        }
        if (running.IsCancellationRequested && !http.RequestAborted.IsCancellationRequested && error != ForwarderError.None)
        {
            // A started response was aborted by the forwarder (the client sees its stream cut, not a clean end).
            ProxyLog.SandboxEndedUnderRequest(logger, target.SandboxId, http.Request.Method, http.Request.Path, error.ToString());
            if (!http.Response.HasStarted)
            {
                await WriteErrorAsync(http, StatusCodes.Status502BadGateway, $"sandbox '{target.SandboxId}' ended while the request was being forwarded", target.SandboxId, target.Port);
            }
            return;
        }
        if (error is ForwarderError.None or ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.ResponseBodyCanceled)
        {
            return;
        }
        var exception = http.Features.Get<IForwarderErrorFeature>()?.Exception;
        ProxyLog.ForwardFailed(logger, http.Request.Method, http.Request.Path, target.SandboxId, target.Port, error.ToString(), exception);
        if (!http.Response.HasStarted && error is ForwarderError.Request or ForwarderError.RequestTimedOut)
        {
            var message = manager.TryGetRunning(target.SandboxId, out _)
                ? $"the sandbox is running but port {target.Port} is not open"
                : $"sandbox '{target.SandboxId}' ended while the request was being forwarded";
            await WriteErrorAsync(http, StatusCodes.Status502BadGateway, message, target.SandboxId, target.Port);
        }
    }

    /// <summary>A sandbox made with allowPublicTraffic: false takes requests to ports other than the agent's only with its traffic token.</summary>
    private static bool TrafficTokenAccepted(HttpContext http, Store.SandboxRecord record, SandboxTarget target) =>
        record.TrafficAccessToken is not { } token || target.Port == SandboxManager.AgentPort
        || FixedTimeEquals(http.Request.Headers[TrafficTokenHeader].ToString(), token);

    private static Task WriteErrorAsync(HttpContext http, int status, string message, string sandboxId, int? port)
    {
        http.Response.Clear();
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(http.Response.Body, new ProxyErrorResponse(status, message, sandboxId, port),
            ApiJsonContext.Default.ProxyErrorResponse, http.RequestAborted);
    }

    private static bool FixedTimeEquals(string presented, string expected) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(presented), Encoding.UTF8.GetBytes(expected));

    /// <summary>
    /// One exchange's transform: keeps the client's Host header, so a server in the sandbox sees the name it was reached
    /// by, and copies the response body with <see cref="ResponseBodyCopy"/> instead of YARP's copier (it says why).
    /// </summary>
    /// <remarks>
    /// The body is copied here and the forwarder told to skip its own copy, which is what YARP offers for this. What its
    /// copy would have done around the body is done here too: the trailers, the end of an HTTP/2 response, a 502 when
    /// nothing was sent yet, an aborted response when something was. The copy ends with the sandbox or the client, and
    /// after <see cref="RequestConfig"/>'s activity timeout without progress, as YARP's would; the forwarder's own
    /// activity token is not used for it, as only YARP's copier resets that token.
    /// </remarks>
    private sealed class ExchangeTransformer(CancellationToken running) : HttpTransformer
    {
        /// <summary>How the response body's copy ended, when this transform copied it.</summary>
        public ForwarderError BodyError { get; private set; }

        public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
        {
            await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
            proxyRequest.Headers.Host = httpContext.Request.Host.Value;
        }

        public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
        {
            var copy = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
            // No response (the request failed) or an upgrade (a duplex stream, WebSockets): the forwarder's own handling.
            if (!copy || proxyResponse is null || proxyResponse.StatusCode == HttpStatusCode.SwitchingProtocols)
            {
                return copy;
            }
            using var ended = CancellationTokenSource.CreateLinkedTokenSource(running, httpContext.RequestAborted);
            Exception? exception;
            await using (var body = await proxyResponse.Content.ReadAsStreamAsync(ended.Token))
            {
                (BodyError, exception) = await ResponseBodyCopy.CopyAsync(body, httpContext.Response.Body, RequestConfig.ActivityTimeout!.Value, ResponseBodyCopy.Buffers.Shared, ended.Token);
            }
            if (BodyError == ForwarderError.None)
            {
                await TransformResponseTrailersAsync(httpContext, proxyResponse, ended.Token);
                if (!HttpProtocol.IsHttp11(httpContext.Request.Protocol) && !HttpProtocol.IsHttp10(httpContext.Request.Protocol))
                {
                    // As YARP does for a streaming HTTP/2 request: the response's end goes out now, not when the request's does.
                    await httpContext.Response.CompleteAsync();
                }
                return false;
            }
            httpContext.Features.Set<IForwarderErrorFeature>(new BodyErrorFeature(BodyError, exception!));
            if (!httpContext.Response.HasStarted)
            {
                // Nothing reached the client yet: it still gets a clean 502.
                httpContext.Response.Clear();
                httpContext.Response.StatusCode = StatusCodes.Status502BadGateway;
            }
            else if (httpContext.Features.Get<IHttpResetFeature>() is { } reset)
            {
                // HTTP/2: the stream is reset (CANCEL or INTERNAL_ERROR), so the client cannot take a cut body for a whole one.
                reset.Reset(BodyError == ForwarderError.ResponseBodyCanceled ? 0x8 : 0x2);
            }
            else
            {
                httpContext.Abort();
            }
            return false;
        }
    }

    private sealed record BodyErrorFeature(ForwarderError Error, Exception? Exception) : IForwarderErrorFeature;
}
