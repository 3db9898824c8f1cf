using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// Where the time of one create went, step by step (issue 6: "measure where create time goes"). Each
/// <see cref="Mark"/> closes the step that ran since the previous one. The API returns it as a Server-Timing header,
/// so a client (or the bench) sees the split without reading the daemon's log. With tracing on, the create is also a
/// span ("sandbox.create") and each step a child span of it (Observability/DaemonTracing.cs). Not thread-safe: one
/// create, one trace.
/// </summary>
internal sealed class CreateTrace : IDisposable
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly DateTime _startUtc = DateTime.UtcNow;
    private readonly List<(string Step, double Milliseconds)> _steps = [];
    private readonly Activity? _activity = Observability.DaemonTracing.Source.StartActivity("sandbox.create");
    private double _last;

    /// <summary>"pooled" or "cold" once the create has taken one of the two ways; null before.</summary>
    public string? Path { get; set; }

    /// <summary>The create's span, when tracing is on.</summary>
    public Activity? Activity => _activity;

    public IReadOnlyList<(string Step, double Milliseconds)> Steps => _steps;

    public double TotalMilliseconds => _clock.Elapsed.TotalMilliseconds;

    /// <summary>Ends the step named <paramref name="step"/> (a token: letters, digits, '-' and '_').</summary>
    public void Mark(string step)
    {
        var now = _clock.Elapsed.TotalMilliseconds;
        _steps.Add((step, now - _last));
        Observability.DaemonTracing.AddStep(_activity, step, _startUtc.AddMilliseconds(_last), _startUtc.AddMilliseconds(now));
        _last = now;
    }

    /// <summary>Ends the create's span with what it made (or why it failed).</summary>
    public void Complete(string? sandboxId, Exception? error)
    {
        if (_activity is null)
        {
            return;
        }
        _activity.SetTag("paddock.sandbox.id", sandboxId);
        _activity.SetTag("paddock.create.path", Path ?? "none");
        if (error is not null)
        {
            _activity.SetStatus(ActivityStatusCode.Error, error.Message);
        }
        _activity.Stop();
    }

    public void Dispose() => _activity?.Dispose();

    /// <summary>The steps and the total as a Server-Timing value (RFC 6797 is not it; W3C Server Timing is).</summary>
    public string ToServerTiming()
    {
        var text = new StringBuilder();
        foreach (var (step, ms) in _steps)
        {
            text.Append(step).Append(";dur=").Append(ms.ToString("0.###", CultureInfo.InvariantCulture)).Append(", ");
        }
        return text.Append("total;dur=").Append(TotalMilliseconds.ToString("0.###", CultureInfo.InvariantCulture)).ToString();
    }

    /// <summary>The steps as one log line.</summary>
    public override string ToString() =>
        string.Join(", ", _steps.Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Step} {s.Milliseconds:0.0} ms")));
}
