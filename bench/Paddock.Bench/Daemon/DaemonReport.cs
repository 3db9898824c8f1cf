using System.Globalization;
using System.Text;
using System.Text.Json;
using Paddock.Bench.Reporting;

namespace Paddock.Bench.Daemon;

/// <summary>The daemon bench's table (figure, p50, p99, baseline, ratio) and its one JSON line.</summary>
internal sealed class DaemonReport
{
    private readonly List<(string Name, string Key, Samples Figure, string? BaselineName, Samples? Baseline)> _rows = [];
    private readonly List<(string Name, string Key, string Unit, double Value)> _facts = [];

    /// <summary>The JSON line's <c>bench</c> field.</summary>
    public string Bench { get; init; } = "daemon";

    public void AddComparison(string name, string key, Samples figure, string baselineName, Samples baseline) =>
        _rows.Add((name, key, figure, baselineName, baseline));

    public void AddFigure(string name, string key, Samples figure) => _rows.Add((name, key, figure, null, null));

    public void AddFact(string name, string key, string unit, double value) => _facts.Add((name, key, unit, value));

    public void PrintTable(TextWriter output)
    {
        var header = new[] { "figure", "unit", "p50", "p99", "n", "baseline", "base p50", "base p99", "ratio" };
        var rows = _rows.Where(r => r.Figure.Count > 0).Select(r => new[]
        {
            r.Name,
            r.Figure.Unit,
            F(r.Figure.P50),
            F(r.Figure.P99),
            r.Figure.Count.ToString(CultureInfo.InvariantCulture),
            r.BaselineName ?? "-",
            r.Baseline is { Count: > 0 } b ? F(b.P50) : "-",
            r.Baseline is { Count: > 0 } b2 ? F(b2.P99) : "-",
            r.Baseline is { Count: > 0 } b3 ? $"{(r.Figure.P50 / b3.P50).ToString("0.00", CultureInfo.InvariantCulture)}x" : "-",
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        output.WriteLine(Line(header, widths));
        output.WriteLine(string.Join("  ", widths.Select(w => new string('-', w))));
        foreach (var row in rows)
        {
            output.WriteLine(Line(row, widths));
        }
        output.WriteLine();
        output.WriteLine("p99 is nearest-rank: with under 100 samples, the slowest run. ratio = p50 / baseline p50.");
        foreach (var (name, _, unit, value) in _facts)
        {
            output.WriteLine($"{name}: {F(value)} {unit}".TrimEnd());
        }
    }

    public void PrintJson(TextWriter output)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteString("bench", Bench);
            foreach (var (name, key, figure, baselineName, baseline) in _rows.Where(r => r.Figure.Count > 0))
            {
                json.WriteStartObject(key);
                json.WriteString("unit", figure.Unit);
                json.WriteNumber("p50", Math.Round(figure.P50, 3));
                json.WriteNumber("p99", Math.Round(figure.P99, 3));
                json.WriteNumber("samples", figure.Count);
                if (baseline is { Count: > 0 })
                {
                    json.WriteString("baseline", baselineName);
                    json.WriteNumber("baseline_p50", Math.Round(baseline.P50, 3));
                    json.WriteNumber("baseline_p99", Math.Round(baseline.P99, 3));
                    json.WriteNumber("ratio", Math.Round(figure.P50 / baseline.P50, 3));
                }
                json.WriteEndObject();
            }
            foreach (var (_, key, _, value) in _facts)
            {
                json.WriteNumber(key, Math.Round(value, 3));
            }
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
        _ => value.ToString("0.00", CultureInfo.InvariantCulture),
    };
}
