using static TorchSharp.torch;

namespace VarSharp.Evaluation;

public static class ImageMetrics
{
    /// <summary>PSNR in dB between two image batches in [−1, 1], measured on the [0, 1] scale (peak 1).</summary>
    public static double Psnr(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        double mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).div(2).square().to(float64).mean().item<double>();
        return mse <= 0 ? double.PositiveInfinity : -10 * Math.Log10(mse);
    }

    /// <summary>PSNR in dB of each image of two batches (B, C, H, W) in [−1, 1], on the [0, 1] scale (peak 1).</summary>
    public static double[] PsnrPerImage(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        var mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).div(2).square().flatten(1).mean([1L]).to(float64);
        return mse.cpu().data<double>().ToArray().Select(m => m <= 0 ? double.PositiveInfinity : -10 * Math.Log10(m)).ToArray();
    }
}
