using System.Diagnostics;
using System.Globalization;
using Microsoft.AspNetCore.Http.Features;
using Paddock.Daemon.Audit;
using Paddock.Daemon.Proxy;
using Paddock.Daemon.Sandboxes;
using Yarp.ReverseProxy.Forwarder;

namespace Paddock.Daemon.Observability;

/// <summary>
/// Watches sandbox traffic on its way through the proxy (it runs just before <see cref="SandboxProxyMiddleware"/> and
/// changes nothing it forwards): a span per request, the proxy and agent-call metrics, and the audit of envd calls
/// (<see cref="EnvdCallAudit"/>). Control-plane requests pass straight on. Kept apart from the proxy so that the
/// proxy's own code does not learn about metrics or the audit.
/// </summary>
internal sealed class SandboxTrafficMiddleware(RequestDelegate next, SandboxManager manager, SandboxDomain domain, AuditTrail audit, DaemonMetrics metrics)
{
    public async Task InvokeAsync(HttpContext http)
    {
        if (!metrics.Enabled && !audit.Enabled && !DaemonTracing.Source.HasListeners())
        {
            await next(http);
            return;
        }
        var route = SandboxRouting.Route(http.Request, domain.HostName);
        if (route.Kind != SandboxRouting.Kind.Sandbox)
        {
            await next(http);
            return;
        }
        var target = route.Target;
        var agent = target.Port == SandboxManager.AgentPort;
        var method = agent ? EnvdCallAudit.Classify(http.Request) : EnvdMethod.Other;
        using var activity = DaemonTracing.Source.StartActivity("sandbox.proxy", ActivityKind.Internal);
        if (activity is not null)
        {
            activity.SetTag("paddock.sandbox.id", target.SandboxId);
            activity.SetTag("paddock.sandbox.port", target.Port);
            activity.SetTag("http.request.method", http.Request.Method);
            activity.SetTag("paddock.envd.method", agent ? EnvdCallAudit.Label(method) : null);
        }

        EnvdCallAudit? call = null;
        if (agent && audit.Enabled && EnvdCallAudit.IsAudited(method) && manager.TryGetRunning(target.SandboxId, out var record))
        {
            call = await EnvdCallAudit.BeginAsync(http, method, audit, record.SandboxId, record.TeamId);
        }
        CountingRequestBody? requestBody = null;
        ObservedResponseBody? responseBody = null;
        var originalFeature = http.Features.Get<IHttpResponseBodyFeature>()!;
        if (metrics.Enabled || call is not null)
        {
            if (metrics.Enabled)
            {
                requestBody = new CountingRequestBody(http.Request.Body);
                http.Request.Body = requestBody;
            }
            responseBody = new ObservedResponseBody(originalFeature, call);
            http.Features.Set<IHttpResponseBodyFeature>(responseBody);
        }
        try
        {
            await next(http);
        }
        finally
        {
            if (responseBody is not null)
            {
                http.Features.Set(originalFeature);
            }
            var status = http.Response.StatusCode;
            call?.Complete(status);
            if (metrics.Enabled)
            {
                metrics.ProxyRequest(agent, status, requestBody?.BytesRead ?? 0, responseBody?.BytesWritten ?? 0);
                if (agent)
                {
                    metrics.AgentCall(EnvdCallAudit.Label(method));
                }
                if (http.Features.Get<IForwarderErrorFeature>() is { Error: not ForwarderError.None } error)
                {
                    metrics.ProxyError(error.Error.ToString());
                }
            }
            if (activity is not null)
            {
                activity.SetTag("http.response.status_code", status.ToString(CultureInfo.InvariantCulture));
                if (status >= 500)
                {
                    activity.SetStatus(ActivityStatusCode.Error);
                }
            }
        }
    }
}
