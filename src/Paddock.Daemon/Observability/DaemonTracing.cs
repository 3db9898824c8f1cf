using System.Diagnostics;
using OpenTelemetry.Exporter;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Paddock.Daemon.Observability;

/// <summary>
/// paddockd's spans: one per create (its steps, the ones Server-Timing shows, as children), one per proxied sandbox
/// request, one per template build step. An ActivitySource with no listener costs one branch per span, so spans are
/// only made when an OTLP endpoint is configured (<c>--otlp-endpoint</c>), which registers OpenTelemetry's listener.
/// </summary>
internal static class DaemonTracing
{
    public const string SourceName = "Paddock.Daemon";

    public static readonly ActivitySource Source = new(SourceName, typeof(DaemonTracing).Assembly.GetName().Version?.ToString());

    /// <summary>Registers OpenTelemetry's tracer with the OTLP/HTTP exporter when <paramref name="options"/> name an endpoint.</summary>
    public static void AddTracing(IServiceCollection services, DaemonOptions options)
    {
        if (options.OtlpEndpoint is not { } endpoint)
        {
            return;
        }
        var traces = new Uri(endpoint, endpoint.AbsolutePath.TrimEnd('/') + "/v1/traces");
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("paddockd", serviceVersion: typeof(DaemonTracing).Assembly.GetName().Version?.ToString()))
            .WithTracing(tracing => tracing
                // ASP.NET Core's own request activity (an ActivitySource since .NET 8): the parent of create and proxy spans.
                .AddSource("Microsoft.AspNetCore")
                .AddSource(SourceName)
                .AddOtlpExporter(otlp =>
                {
                    otlp.Endpoint = traces;
                    otlp.Protocol = OtlpExportProtocol.HttpProtobuf;
                }));
    }

    /// <summary>A finished child span of <paramref name="parent"/> covering [start, end] (a create step measured after the fact).</summary>
    public static void AddStep(Activity? parent, string name, DateTime startUtc, DateTime endUtc)
    {
        if (parent is null)
        {
            return;
        }
        using var step = Source.StartActivity(name, ActivityKind.Internal, parent.Context, startTime: startUtc);
        if (step is not null)
        {
            step.SetEndTime(endUtc);
        }
    }
}
