using System.Globalization;
using System.Text;

namespace VarSharp.Parity;

/// <summary>Plain-text rendering of a parity table (used by tests and logs; the CLI renders its own).</summary>
public static class GoldenTable
{
    public static string Format(IReadOnlyList<GoldenRow> rows)
    {
        var sb = new StringBuilder();
        int w = Math.Max(6, rows.Count == 0 ? 6 : rows.Max(r => r.Name.Length));
        sb.AppendLine(CultureInfo.InvariantCulture, $"{"tensor".PadRight(w)}  {"status",-15} {"max|Δ|",10} {"max|Δ|/max|ref|",16} {"limit",10}  rule");
        foreach (var r in rows)
        {
            var line = $"{r.Name.PadRight(w)}  {r.Status,-15} {Num(r.MaxAbs),10} {Num(r.MaxRel),16} {Num(r.Limit),10}  {r.Rule} {r.Note}";
            sb.AppendLine(line.TrimEnd());
        }
        var counts = rows.GroupBy(r => r.Status).Select(g => $"{g.Count()} {g.Key}");
        sb.AppendLine(string.Join(", ", counts));
        return sb.ToString();
    }

    public static string Num(double v) => double.IsNaN(v) ? "-" : v.ToString("0.00e+0", CultureInfo.InvariantCulture);
}
