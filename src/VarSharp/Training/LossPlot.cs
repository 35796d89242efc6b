using ScottPlot;

namespace VarSharp.Training;

/// <summary>One curve of a <see cref="LossPlot"/>: points (step, value), drawn as a line or as markers.</summary>
public sealed record PlotSeries(string Label, IReadOnlyList<(long Step, double Value)> Points, bool Line = true);

/// <summary>Draws a run's curves against the step: losses on the left axis (log10), another measure on the right.</summary>
public static class LossPlot
{
    /// <summary>The tokenizer's plot: training loss (left, log10) and evaluation PSNR (right).</summary>
    public static void Write(string path, IReadOnlyList<(long Step, double Loss)> loss, IReadOnlyList<(long Step, double Psnr)> psnr, string title) =>
        Write(path, title, [new PlotSeries("train loss (log10)", loss)], "log10 loss", [new PlotSeries("eval PSNR (dB)", psnr, Line: false)], "PSNR dB");

    /// <summary>Left series are drawn as log10 of their values; right series as they are, on the right axis.</summary>
    public static void Write(string path, string title, IReadOnlyList<PlotSeries> left, string leftLabel, IReadOnlyList<PlotSeries> right, string rightLabel)
    {
        var plot = new Plot();
        plot.Title(title);
        plot.XLabel("step");
        foreach (var s in left.Where(s => s.Points.Count > 0))
        {
            var xs = s.Points.Select(p => (double)p.Step).ToArray();
            var ys = s.Points.Select(p => Math.Log10(Math.Max(p.Value, 1e-12))).ToArray();
            var sc = s.Line ? plot.Add.ScatterLine(xs, ys) : plot.Add.Scatter(xs, ys);
            sc.LegendText = s.Label;
            sc.LineWidth = 1.5f;
            plot.Axes.Left.Label.Text = leftLabel;
        }
        foreach (var s in right.Where(s => s.Points.Count > 0))
        {
            var xs = s.Points.Select(p => (double)p.Step).ToArray();
            var ys = s.Points.Select(p => p.Value).ToArray();
            var sc = s.Line ? plot.Add.ScatterLine(xs, ys) : plot.Add.Scatter(xs, ys);
            sc.LegendText = s.Label;
            sc.Axes.YAxis = plot.Axes.Right;
            plot.Axes.Right.Label.Text = rightLabel;
        }
        plot.ShowLegend(Alignment.UpperRight);
        // Rendered in memory, then written like every other output (temporary file, flush, rename; no leftover on failure).
        AtomicFile.Write(path, plot.GetImageBytes(900, 500, ImageFormat.Png));
    }
}
