using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Paddock.Bench.Reporting;

/// <summary>Prints the figures as a table, and optionally as one JSON line at the end.</summary>
internal sealed class Report
{
    private readonly List<Comparison> _comparisons = [];
    private readonly List<(string Name, string Key, string Unit, double Value)> _facts = [];

    public void Add(Comparison comparison) => _comparisons.Add(comparison);

    public void AddAll(IEnumerable<Comparison> comparisons) => _comparisons.AddRange(comparisons);

    public void AddFact(string name, string key, string unit, double value) => _facts.Add((name, key, unit, value));

    public void PrintTable(TextWriter output)
    {
        var header = new[] { "metric", "unit", "agent p50", "agent p99", "n", "baseline", "base p50", "base p99", "ratio", "aim" };
        var rows = _comparisons.Select(c => new[]
        {
            c.Name,
            c.Agent.Unit,
            F(c.Agent.P50),
            F(c.Agent.P99),
            c.Agent.Count.ToString(CultureInfo.InvariantCulture),
            c.BaselineName,
            F(c.Baseline.P50),
            F(c.Baseline.P99),
            $"{c.Ratio.ToString("0.00", CultureInfo.InvariantCulture)}x",
            $"{(c.Agent.Direction == Direction.LowerIsBetter ? "<=" : ">=")}{c.Aim.ToString("0.##", CultureInfo.InvariantCulture)}x {(c.MeetsAim ? "met" : "MISSED")}",
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        output.WriteLine(Line(header, widths));
        output.WriteLine(string.Join("  ", widths.Select(w => new string('-', w))));
        foreach (var row in rows)
        {
            output.WriteLine(Line(row, widths));
        }
        output.WriteLine();
        output.WriteLine("p99 is the bad tail: the slowest 1% of a latency, the lowest 1% of a throughput (with few runs, the worst run).");
        foreach (var (name, _, unit, value) in _facts)
        {
            var text = value == Math.Floor(value) && Math.Abs(value) < 1e15 ? value.ToString("0", CultureInfo.InvariantCulture) : F(value);
            output.WriteLine($"{name}: {text} {unit}".TrimEnd());
        }
    }

    public void PrintJson(TextWriter output)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            foreach (var (_, key, _, value) in _facts)
            {
                json.WriteNumber(key, Math.Round(value, 3));
            }
            json.WriteStartArray("comparisons");
            foreach (var c in _comparisons)
            {
                json.WriteStartObject();
                json.WriteString("key", c.Key);
                json.WriteString("unit", c.Agent.Unit);
                json.WriteNumber("agent_p50", Math.Round(c.Agent.P50, 4));
                json.WriteNumber("agent_p99", Math.Round(c.Agent.P99, 4));
                json.WriteNumber("samples", c.Agent.Count);
                json.WriteString("baseline", c.BaselineName);
                json.WriteNumber("baseline_p50", Math.Round(c.Baseline.P50, 4));
                json.WriteNumber("baseline_p99", Math.Round(c.Baseline.P99, 4));
                json.WriteNumber("ratio", Math.Round(c.Ratio, 3));
                json.WriteNumber("aim", c.Aim);
                json.WriteBoolean("meets_aim", c.MeetsAim);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        output.WriteLine(Encoding.UTF8.GetString(stream.ToArray()));
    }

    private static string Line(string[] cells, int[] widths) =>
        string.Join("  ", cells.Select((c, i) => i is 0 or 1 or 5 ? c.PadRight(widths[i]) : c.PadLeft(widths[i]))).TrimEnd();

    private static string F(double value) => value switch
    {
        >= 100 => value.ToString("0", CultureInfo.InvariantCulture),
        >= 10 => value.ToString("0.0", CultureInfo.InvariantCulture),
        _ => value.ToString("0.000", CultureInfo.InvariantCulture),
    };
}
