namespace Paddock.Bench.Reporting;

/// <summary>Whether a bigger number is better (throughput) or worse (latency).</summary>
internal enum Direction
{
    LowerIsBetter,
    HigherIsBetter,
}

/// <summary>Samples of one quantity, in <see cref="Unit"/>.</summary>
internal sealed class Samples(string unit, Direction direction)
{
    private readonly List<double> _values = [];

    public string Unit { get; } = unit;

    public Direction Direction { get; } = direction;

    public int Count => _values.Count;

    public void Add(double value) => _values.Add(value);

    /// <summary>The latest sample (for a progress line).</summary>
    public double Last => _values[^1];

    public double P50 => Percentile(50);

    /// <summary>The 99th percentile on the bad side: the slow tail of a latency, the low tail of a throughput.</summary>
    public double P99 => Direction == Direction.LowerIsBetter ? Percentile(99) : Percentile(1);

    /// <summary>Nearest-rank percentile (no interpolation, so every figure is a value that was measured).</summary>
    public double Percentile(double p)
    {
        if (_values.Count == 0)
        {
            throw new InvalidOperationException("no samples");
        }
        var sorted = _values.Order().ToArray();
        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}

/// <summary>
/// One line of the report: the agent's figure against a baseline measured in the same run. The ratio is
/// agent/baseline of the p50s; <see cref="Aim"/> is the bound it should meet (at most for latency, at least for throughput).
/// </summary>
internal sealed record Comparison(string Name, string Key, Samples Agent, string BaselineName, Samples Baseline, double Aim)
{
    public double Ratio => Agent.P50 / Baseline.P50;

    public bool MeetsAim => Agent.Direction == Direction.LowerIsBetter ? Ratio <= Aim : Ratio >= Aim;
}
