using static TorchSharp.torch;

namespace VarSharp.Evaluation;

/// <summary>
/// Fréchet distance between Gaussians fitted to two feature sets (the formula behind FID):
/// |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½). Computed in float64; tr((Σ₁Σ₂)^½) is the sum of square roots of the
/// eigenvalues of Σ₁^½ Σ₂ Σ₁^½, which is symmetric, so a symmetric eigendecomposition suffices.
/// What the features are decides what the number means: on our Fashion-MNIST classifier's features it is not Inception-FID.
/// </summary>
public static class FrechetDistance
{
    public static double Compute(Tensor features1_ND, Tensor features2_ND)
    {
        if (features1_ND.dim() != 2 || features2_ND.dim() != 2 || features1_ND.shape[1] != features2_ND.shape[1])
            throw new VarSharpException($"Fréchet distance needs two (N, D) feature sets of equal D but got ({string.Join(", ", features1_ND.shape)}) and ({string.Join(", ", features2_ND.shape)}).");
        if (features1_ND.shape[0] < 2 || features2_ND.shape[0] < 2)
            throw new VarSharpException("Fréchet distance needs at least 2 samples in each set.");
        using var scope = NewDisposeScope();
        var (mu1, sigma1) = Moments(features1_ND);
        var (mu2, sigma2) = Moments(features2_ND);
        var sqrt1 = SymmetricSqrt(sigma1);
        var middle = sqrt1.matmul(sigma2).matmul(sqrt1);
        middle = (middle + middle.t()).div(2);
        var traceSqrt = linalg.eigvalsh(middle).clamp_min(0).sqrt().sum();
        var meanTerm = (mu1 - mu2).square().sum();
        return (meanTerm + sigma1.trace() + sigma2.trace() - traceSqrt.mul(2)).item<double>();
    }

    /// <summary>Mean (D) and unbiased covariance (D, D) in float64.</summary>
    public static (Tensor Mean_D, Tensor Cov_DD) Moments(Tensor features_ND)
    {
        var x = features_ND.to(float64);
        var mu = x.mean([0L]);
        var centered = x - mu;
        var cov = centered.t().matmul(centered).div(x.shape[0] - 1);
        return (mu, cov);
    }

    private static Tensor SymmetricSqrt(Tensor sym_DD)
    {
        var (values, vectors) = linalg.eigh(sym_DD);
        return vectors.matmul(diag(values.clamp_min(0).sqrt())).matmul(vectors.t());
    }
}
