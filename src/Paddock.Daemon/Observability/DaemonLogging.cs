using Microsoft.Extensions.Logging.Console;

namespace Paddock.Daemon.Observability;

/// <summary>
/// The console log: one line per event (text) or one JSON object per line (<c>--log-format json</c>), with the trace
/// and span ids of the request or create an event belongs to (scopes). The slim builder's console logger printed a
/// header line and an indented message line per event; this is the only provider.
/// </summary>
internal static class DaemonLogging
{
    public static void Configure(ILoggingBuilder logging, DaemonOptions options)
    {
        logging.ClearProviders();
        // ASP.NET Core's hosting and YARP log every request at Information (request starting, endpoint, proxying,
        // finished): four events per proxied command, each a console line. Requests are counted in /metrics and
        // traced with --otlp-endpoint; their warnings and errors still come here.
        logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        logging.AddFilter("Yarp", LogLevel.Warning);
        logging.Configure(o => o.ActivityTrackingOptions = ActivityTrackingOptions.TraceId | ActivityTrackingOptions.SpanId);
        if (options.LogFormat == LogFormat.Json)
        {
            logging.AddJsonConsole(o =>
            {
                o.IncludeScopes = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            });
        }
        else
        {
            logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.IncludeScopes = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
                o.ColorBehavior = LoggerColorBehavior.Disabled;
            });
        }
    }
}
