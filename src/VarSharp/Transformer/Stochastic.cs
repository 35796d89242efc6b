using TorchSharp;
using static TorchSharp.torch;

namespace VarSharp.Transformer;

/// <summary>
/// Random ops that draw only from a caller-supplied generator (TorchSharp's <c>nn.init.*</c> and dropout ignore or
/// lack a generator, so VarSharp does not use them for anything that must be reproducible).
/// </summary>
internal static class Stochastic
{
    /// <summary>PyTorch's <c>trunc_normal_</c> (inverse-CDF method); a and b are absolute bounds, as in torch.</summary>
    public static void TruncNormal_(Tensor t, double std, Generator generator, double mean = 0.0, double a = -2.0, double b = 2.0)
    {
        static double NormCdf(double x) => (1.0 + Erf(x / Math.Sqrt(2.0))) / 2.0;
        using var _ = no_grad();
        double l = NormCdf((a - mean) / std), u = NormCdf((b - mean) / std);
        t.uniform_(2 * l - 1, 2 * u - 1, generator);
        t.erfinv_();
        t.mul_(std * Math.Sqrt(2.0));
        t.add_(mean);
        t.clamp_(a, b);
    }

    /// <summary>Fills with N(mean, std²) drawn from <paramref name="generator"/>.</summary>
    public static void Normal_(Tensor t, double std, Generator generator, double mean = 0.0)
    {
        using var _ = no_grad();
        t.normal_(mean, std, generator);
    }

    /// <summary>
    /// Per-sample keep mask for stochastic depth (timm's drop_path with scale_by_keep): shape (B, 1, …, 1), values
    /// 0 or 1/keep.
    /// </summary>
    public static Tensor DropPathMask(Tensor x, double dropProb, Generator generator)
    {
        double keep = 1.0 - dropProb;
        var shape = new long[x.dim()];
        shape[0] = x.shape[0];
        for (int i = 1; i < shape.Length; i++) shape[i] = 1;
        var mask = empty(shape, dtype: x.dtype, device: x.device).bernoulli_(keep, generator);
        if (keep > 0) mask.div_(keep);
        return mask;
    }

    /// <summary>Inverted dropout with an explicit generator.</summary>
    public static Tensor Dropout(Tensor x, double p, Generator generator)
    {
        double keep = 1.0 - p;
        var mask = empty_like(x).bernoulli_(keep, generator).div_(keep);
        return x.mul(mask);
    }

    /// <summary>erf in double precision (only for the two bound constants of the truncated normal).</summary>
    private static double Erf(double x)
    {
        using var t = tensor(x, dtype: ScalarType.Float64);
        using var e = t.erf();
        return e.item<double>();
    }
}
