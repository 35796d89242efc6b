using TorchSharp;
using VarSharp.Tests.Support;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Transformer;

/// <summary>Parity with the official VAR.forward on every golden case (eval mode, cond_drop_rate 0).</summary>
public class VarGoldenTests(ITestOutputHelper output)
{
    private const double ForwardTol = 1e-4;   // README: max|Δ| ≤ 1e-4·max(1, max|ref|)

    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void TeacherForcingLogitsMatch(string caseName)
    {
        using var g = new VarGoldenCase(caseName);
        using var scope = NewDisposeScope();
        var labels = g["labels"];
        var x = g["var.x_BLCv_wo_first_l"];

        var logits = g.Model.Forward(labels, x);
        Assert.Equal(ScalarType.Float32, logits.dtype);
        double err = TensorAssert.Close(logits, g["var.logits"], ForwardTol, $"{caseName} var.logits");

        var uncond = full_like(labels, g.Config.NumClasses);
        var logitsU = g.Model.Forward(uncond, x);
        double errU = TensorAssert.Close(logitsU, g["var.logits_uncond"], ForwardTol, $"{caseName} var.logits_uncond");

        output.WriteLine($"{caseName}: var.logits max|Δ| = {err:g3} (max|ref| {TensorAssert.MaxAbs(g["var.logits"]):g3}), var.logits_uncond max|Δ| = {errU:g3}");
    }

    /// <summary>The one-scale KV-cache step over all scales reproduces the teacher-forcing logits (and the goldens).</summary>
    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void KvCacheStepsMatchTeacherForcing(string caseName)
    {
        using var g = new VarGoldenCase(caseName);
        using var scope = NewDisposeScope();
        var cfg = g.Config;
        var labels = g["labels"];
        var x = g["var.x_BLCv_wo_first_l"];
        var full = g.Model.Forward(labels, x);

        using var cache = g.Model.NewKvCache(labels.shape[0]);
        double worst = 0, worstRef = 0;
        for (int si = 0; si < cfg.NumScales; si++)
        {
            var (bg, ed) = cfg.BeginEnds[si];
            var input = si == 0 ? null : x.narrow(1, bg - cfg.FirstL, ed - bg);
            var step = g.Model.StepLogits(si, labels, input, cache);
            worst = Math.Max(worst, TensorAssert.Close(step, full.narrow(1, bg, ed - bg), 1e-5, $"{caseName} scale {si} vs forward"));
            worstRef = Math.Max(worstRef, TensorAssert.Close(step, g["var.logits"].narrow(1, bg, ed - bg), ForwardTol, $"{caseName} scale {si} vs golden"));
        }
        Assert.Equal(cfg.L, cache.Length);
        output.WriteLine($"{caseName}: KV-cache steps vs our forward max|Δ| = {worst:g3}, vs golden var.logits {worstRef:g3}");
    }
}
