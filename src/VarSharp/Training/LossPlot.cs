using ScottPlot;

namespace VarSharp.Training;

/// <summary>Draws a run's training loss (left axis, log scale) and evaluation PSNR (right axis) against the step.</summary>
public static class LossPlot
{
    public static void Write(string path, IReadOnlyList<(long Step, double Loss)> loss, IReadOnlyList<(long Step, double Psnr)> psnr, string title)
    {
        var plot = new Plot();
        plot.Title(title);
        plot.XLabel("step");
        if (loss.Count > 0)
        {
            var xs = loss.Select(p => (double)p.Step).ToArray();
            var ys = loss.Select(p => Math.Log10(Math.Max(p.Loss, 1e-12))).ToArray();
            var line = plot.Add.ScatterLine(xs, ys);
            line.LegendText = "train loss (log10)";
            line.LineWidth = 1.5f;
            plot.Axes.Left.Label.Text = "log10 loss";
        }
        if (psnr.Count > 0)
        {
            var xs = psnr.Select(p => (double)p.Step).ToArray();
            var ys = psnr.Select(p => p.Psnr).ToArray();
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = "eval PSNR (dB)";
            line.Axes.YAxis = plot.Axes.Right;
            plot.Axes.Right.Label.Text = "PSNR dB";
        }
        plot.ShowLegend(Alignment.UpperRight);
        var full = System.IO.Path.GetFullPath(path);
        var temp = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(full)!, $".{System.IO.Path.GetFileNameWithoutExtension(full)}.{Guid.NewGuid():N}.tmp.png");
        plot.SavePng(temp, 900, 500);
        File.Move(temp, full, overwrite: true);
    }
}
