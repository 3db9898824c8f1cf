using System.Text;

namespace Paddock.Cli.Output;

/// <summary>Plain aligned columns for people (scripts use --json): a header row, then one row per item.</summary>
internal sealed class Table
{
    private readonly string[] _headers;
    private readonly List<string[]> _rows = [];

    public Table(params string[] headers) => _headers = headers;

    public void Add(params string[] cells)
    {
        if (cells.Length != _headers.Length)
        {
            throw new ArgumentException($"a row of {cells.Length} cells in a table of {_headers.Length} columns");
        }
        _rows.Add(cells);
    }

    public string Render()
    {
        var widths = _headers.Select(h => h.Length).ToArray();
        foreach (var row in _rows)
        {
            for (var i = 0; i < row.Length; i++)
            {
                widths[i] = Math.Max(widths[i], row[i].Length);
            }
        }
        var text = new StringBuilder();
        void Line(string[] cells)
        {
            for (var i = 0; i < cells.Length; i++)
            {
                text.Append(i == cells.Length - 1 ? cells[i] : cells[i].PadRight(widths[i] + 2));
            }
            text.Append('\n');
        }
        Line(_headers);
        foreach (var row in _rows)
        {
            Line(row);
        }
        return text.ToString();
    }
}
