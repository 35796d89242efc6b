using static TorchSharp.torch;

namespace VarSharp.Parity;

public enum GoldenStatus { Pass, Fail, Input, NotImplemented, LegitimateTie, AfterTie }

/// <summary>One line of the parity table. MaxRel is max|Δ| / max|ref| (error relative to the tensor's scale).</summary>
public sealed record GoldenRow(string Name, string Shape, GoldenStatus Status, double MaxAbs, double MaxRel, double Limit, string Rule, string Note = "")
{
    public bool Failed => Status == GoldenStatus.Fail;
}

/// <summary>Compares one recomputed tensor with its reference under the rule of <see cref="Tolerance.For"/>.</summary>
public static class GoldenComparison
{
    public static GoldenRow Compare(string name, Tensor actual, Tensor expected, Tolerance tol, Tensor? looseMask = null, double looseLimit = 0)
    {
        string shape = "(" + string.Join(",", expected.shape) + ")";
        if (!actual.shape.SequenceEqual(expected.shape))
            return new GoldenRow(name, shape, GoldenStatus.Fail, double.NaN, double.NaN, 0, tol.ToString(),
                $"shape ({string.Join(",", actual.shape)}) instead of {shape}");
        using var scope = NewDisposeScope();
        if (tol.Kind == ToleranceKind.Exact)
        {
            long mismatches = actual.to(int64).ne(expected.to(int64)).sum().item<long>();
            return new GoldenRow(name, shape, mismatches == 0 ? GoldenStatus.Pass : GoldenStatus.Fail, mismatches, 0, 0, "exact",
                mismatches == 0 ? "" : $"{mismatches} of {expected.numel()} differ");
        }
        var a = actual.to(float64).cpu();
        var e = expected.to(float64).cpu();
        var diff = (a - e).abs();
        double maxAbs = diff.numel() == 0 ? 0 : diff.max().item<double>();
        double maxRef = e.numel() == 0 ? 0 : e.abs().max().item<double>();
        double maxRel = maxRef > 0 ? maxAbs / maxRef : maxAbs;
        double limit = tol.Kind switch
        {
            ToleranceKind.ScaledAbsolute => tol.Factor * Math.Max(1, maxRef),
            ToleranceKind.Relative => tol.Factor * maxRef,
            ToleranceKind.GradientScaled => tol.Factor * maxRef,
            ToleranceKind.AfterStep => tol.Factor,
            _ => 0,
        };
        bool ok;
        string note = "";
        if (tol.Kind == ToleranceKind.AfterStep && looseMask is not null)
        {
            var strict = diff.masked_fill(looseMask.cpu(), 0);
            var loose = diff.masked_fill(looseMask.cpu().logical_not(), 0);
            double strictMax = strict.numel() == 0 ? 0 : strict.max().item<double>();
            double looseMax = loose.numel() == 0 ? 0 : loose.max().item<double>();
            ok = strictMax <= limit && looseMax <= looseLimit;
            long looseCount = looseMask.sum().item<long>();
            if (looseCount > 0) note = $"{looseCount} element(s) with |grad|<1e-6 allowed {looseLimit:0.#e+0}";
        }
        else
        {
            ok = maxAbs <= limit && !double.IsNaN(maxAbs);
        }
        return new GoldenRow(name, shape, ok ? GoldenStatus.Pass : GoldenStatus.Fail, maxAbs, maxRel, limit, tol.ToString(), note);
    }
}
