using VarSharp.Data;
using VarSharp.Tokenizer;
using static TorchSharp.torch;

namespace VarSharp.Evaluation;

/// <summary>
/// How well a tokenizer reconstructs held-out images and how much of its codebook it uses.
/// </summary>
/// <param name="Images">Images evaluated.</param>
/// <param name="Mse">Mean squared error per pixel value on the model's [−1, 1] scale (what the l2 training term measures); 4× the MSE on the [0, 1] scale.</param>
/// <param name="Psnr">PSNR in dB on the [0, 1] scale (peak 1), computed per image and averaged over images.</param>
/// <param name="PsnrOfMeanMse">PSNR of the pooled [0, 1]-scale MSE, −10·log10(mean MSE); below <paramref name="Psnr"/> when images differ.</param>
/// <param name="PatchNums">The scales, coarse to fine.</param>
/// <param name="UsedPercent">Per scale: percent of the codebook chosen at least once on the evaluated images.</param>
/// <param name="ReferenceRulePercent">
/// Per scale: percent of codes the reference's usage rule counts as used, in its steady state: a code counts when its
/// mean hits per image at that scale reach 0.08 · h·w / V (h·w the finest token map), which is where the reference's
/// hit EMA (compared with 0.08 · B·h·w / V) settles for a code hit that often per batch of B images.
/// </param>
/// <param name="UsedPercentAnyScale">Percent of the codebook chosen at least once at any scale.</param>
/// <param name="Classifier">With a classifier: how it sees the reconstructions next to the originals; otherwise null.</param>
public sealed record TokenizerEvalReport(
    int Images, double Mse, double Psnr, double PsnrOfMeanMse, int VocabSize, int[] PatchNums,
    double[] UsedPercent, double[] ReferenceRulePercent, double UsedPercentAnyScale, double Seconds,
    ReconstructionScores? Classifier = null);

/// <summary>
/// The classifier's view of a tokenizer's round trip, the analogue of the rFID that VAR reports for its tokenizer (but on
/// our Fashion-MNIST classifier's features, not Inception's).
/// </summary>
/// <param name="FrechetDistance">Fréchet distance between the features of the 8-bit reconstructions and those of the originals.</param>
/// <param name="AccuracyOriginal">The classifier's accuracy on the originals (null without labels).</param>
/// <param name="AccuracyReconstructed">Its accuracy on the reconstructions (null without labels).</param>
public sealed record ReconstructionScores(double FrechetDistance, double? AccuracyOriginal, double? AccuracyReconstructed);

public static class TokenizerEvaluation
{
    /// <summary>
    /// Reconstructs <paramref name="images_NCHW"/> (in [−1, 1]) <paramref name="batchSize"/> at a time; progress reports
    /// images done. With a <paramref name="classifier"/> (single-channel, at the tokenizer's image size) the 8-bit
    /// reconstructions are also compared with the originals in its feature space; <paramref name="labels_N"/>, when given,
    /// adds its accuracy on both.
    /// </summary>
    public static TokenizerEvalReport Evaluate(VqVae vae, Tensor images_NCHW, int batchSize = 64, IProgress<int>? progress = null,
        FashionClassifier? classifier = null, Tensor? labels_N = null)
    {
        ArgumentNullException.ThrowIfNull(vae);
        ArgumentNullException.ThrowIfNull(images_NCHW);
        if (batchSize < 1) throw new VarSharpException($"batch size must be at least 1 but is {batchSize}.");
        long n = images_NCHW.shape[0];
        if (n == 0) throw new VarSharpException("There are no images to evaluate the tokenizer on.");
        vae.CheckImage(images_NCHW);
        if (classifier is not null && classifier.ImageSize != vae.Config.ImageSize)
            throw new VarSharpException(
                $"The tokenizer works on {vae.Config.ImageSize}×{vae.Config.ImageSize} images but the classifier takes {classifier.ImageSize}×{classifier.ImageSize}; use a classifier trained at the tokenizer's image size.");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var cfg = vae.Config;
        int S = cfg.VPatchNums.Length, V = cfg.VocabSize;
        vae.eval();
        using var noGrad = no_grad();
        using var outer = NewDisposeScope();   // the intermediates of the usage figures below
        using var counts_SV = zeros([S, V], dtype: int64);
        double squaredError = 0;
        var psnrs = new List<double>((int)n);
        var originals = new List<Tensor>();
        var reconstructions = new List<Tensor>();
        try
        {
            for (long s = 0; s < n; s += batchSize)
            {
                using var scope = NewDisposeScope();
                var x = images_NCHW.narrow(0, s, Math.Min(batchSize, n - s)).to(vae.Device);
                var f = vae.Encode(x);
                using var q = vae.Quantizer.Quantize(f, keepFhats: true, keepDiagnostics: false);
                var rec = vae.FhatToImage(q.Fhats[^1]);
                squaredError += (rec - x).square().sum().to(float64).item<double>();
                psnrs.AddRange(ImageMetrics.PsnrPerImage(rec, x));
                for (int si = 0; si < S; si++) counts_SV[si].add_(q.Indices[si].flatten().bincount(null, V).cpu());
                if (classifier is not null)
                {
                    // Both sides as the classifier sees images: 8-bit levels, one channel.
                    originals.Add(Gray(ImageIO.As8Bit(x.cpu())).DetachFromDisposeScope());
                    reconstructions.Add(Gray(ImageIO.As8Bit(rec.cpu())).DetachFromDisposeScope());
                }
                progress?.Report((int)Math.Min(n, s + batchSize));
            }
        }
        catch
        {
            // Kept outside the scopes for the classifier: freed here when the loop does not get that far.
            foreach (var t in originals.Concat(reconstructions)) t.Dispose();
            throw;
        }
        double mse = squaredError / images_NCHW.numel();
        double mse01 = mse / 4;
        using var used = counts_SV.gt(0);
        using var usedPct = used.to(float64).mean([1L]).mul(100);
        double margin = 0.08 * cfg.LatentSize * cfg.LatentSize / V;   // mean hits per image
        using var rulePct = counts_SV.to(float64).div(n).ge(margin).to(float64).mean([1L]).mul(100);
        using var anyScale = used.any(0).to(float64).mean().mul(100);
        // A Fréchet distance needs two images at least (a covariance); fewer leave the classifier's scores out.
        var scores = classifier is null || n < 2 ? null : Score(classifier, originals, reconstructions, labels_N);
        if (scores is null) foreach (var t in originals.Concat(reconstructions)) t.Dispose();
        return new TokenizerEvalReport(
            (int)n, mse, psnrs.Average(), mse01 <= 0 ? double.PositiveInfinity : -10 * Math.Log10(mse01), V, cfg.VPatchNums.ToArray(),
            usedPct.data<double>().ToArray(), rulePct.data<double>().ToArray(), anyScale.item<double>(), clock.Elapsed.TotalSeconds, scores);
    }

    private static Tensor Gray(Tensor images_NCHW) => images_NCHW.shape[1] == 1 ? images_NCHW : images_NCHW.mean([1L], keepdim: true);

    internal static ReconstructionScores Score(FashionClassifier classifier, List<Tensor> originals, List<Tensor> reconstructions, Tensor? labels_N)
    {
        using var scope = NewDisposeScope();
        try
        {
            var (fo, po) = classifier.Embed(cat(originals, 0));
            var (fr, pr) = classifier.Embed(cat(reconstructions, 0));
            double fd = FrechetDistance.Compute(fr, fo);
            double? Accuracy(Tensor predictions) => labels_N is null ? null : predictions.eq(labels_N.cpu()).to(float64).mean().item<double>();
            return new ReconstructionScores(fd, Accuracy(po), Accuracy(pr));
        }
        finally
        {
            foreach (var t in originals.Concat(reconstructions)) t.Dispose();
        }
    }
}
