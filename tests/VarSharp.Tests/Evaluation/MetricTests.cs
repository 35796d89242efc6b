using TorchSharp;
using VarSharp.Evaluation;
using static TorchSharp.torch;

namespace VarSharp.Tests.Evaluation;

public class MetricTests
{
    [Fact]
    public void FrechetDistanceMatchesTheClosedFormForDiagonalGaussians()
    {
        // Two large samples of N(μ, diag(σ²)): FD → |μ1−μ2|² + Σ(σ1 − σ2)².
        var g = new Generator(5);
        using var a = randn([20000, 3], generator: g, dtype: float64).mul(tensor(new[] { 1.0, 2.0, 0.5 }, dtype: float64));
        using var b = randn([20000, 3], generator: g, dtype: float64).mul(tensor(new[] { 2.0, 1.0, 0.5 }, dtype: float64)).add(tensor(new[] { 1.0, 0.0, -1.0 }, dtype: float64));
        double expected = (1 + 0 + 1) + (1 + 1 + 0);
        double fd = FrechetDistance.Compute(a, b);
        Assert.InRange(fd, expected - 0.1, expected + 0.1);
    }

    [Fact]
    public void FrechetDistanceOfASetWithItselfIsZero()
    {
        var g = new Generator(6);
        using var a = randn([500, 8], generator: g);
        Assert.InRange(FrechetDistance.Compute(a, a), -1e-6, 1e-6);
    }

    [Fact]
    public void PrecisionAndRecallSeparateFidelityFromDiversity()
    {
        var g = new Generator(7);
        using var real = randn([400, 2], generator: g);
        var same = PrecisionRecall.Compute(real, real.clone());
        Assert.Equal(1.0, same.Precision, 6);
        Assert.Equal(1.0, same.Recall, 6);
        // Generated samples collapsed onto a small part of the real distribution: precise but not diverse.
        using var collapsed = randn([400, 2], generator: g).mul(0.05).add(0.5);
        var (p, r) = PrecisionRecall.Compute(real, collapsed);
        Assert.True(p > 0.9, $"precision {p}");
        Assert.True(r < 0.2, $"recall {r}");
        // Far away: neither.
        using var far = randn([400, 2], generator: g).add(50);
        var farPr = PrecisionRecall.Compute(real, far);
        Assert.Equal(0.0, farPr.Precision);
        Assert.Equal(0.0, farPr.Recall);
    }
}
