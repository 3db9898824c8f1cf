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
