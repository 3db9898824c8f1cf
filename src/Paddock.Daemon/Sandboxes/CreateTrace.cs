using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// Where the time of one create went, step by step (issue 6: "measure where create time goes"). Each
/// <see cref="Mark"/> closes the step that ran since the previous one. The API returns it as a Server-Timing header,
/// so a client (or the bench) sees the split without reading the daemon's log. Not thread-safe: one create, one trace.
/// </summary>
internal sealed class CreateTrace
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly List<(string Step, double Milliseconds)> _steps = [];
    private double _last;

    public IReadOnlyList<(string Step, double Milliseconds)> Steps => _steps;

    public double TotalMilliseconds => _clock.Elapsed.TotalMilliseconds;

    /// <summary>Ends the step named <paramref name="step"/> (a token: letters, digits, '-' and '_').</summary>
    public void Mark(string step)
    {
        var now = _clock.Elapsed.TotalMilliseconds;
        _steps.Add((step, now - _last));
        _last = now;
    }

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
