using TorchSharp;
using VarSharp.Tokenizer;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>What one application of the dead-code remedy did.</summary>
/// <param name="Dead">Codes found dead (hit EMA below the margin at every scale).</param>
/// <param name="RevivedPerScale">How many of them were re-seeded from each scale's residuals.</param>
/// <param name="Rows">The codebook rows that were re-seeded.</param>
public sealed record DeadCodeReport(int Dead, int[] RevivedPerScale, long[] Rows)
{
    public int Revived => RevivedPerScale.Sum();
}

/// <summary>
/// Revives codebook entries nobody uses. The codebook is shared by all scales, so a code is dead only when its hit
/// EMA is below the margin (ratio × B·h·w / V, the reference's usage rule) at every scale. Dead codes are handed out
/// round-robin over the scales, coarsest first, and each is set to a distinct random row of that scale's searched
/// residual from a recent batch (rows chosen with the trainer's generator). Coarse scales, whose few tokens per image
/// collapse onto a handful of codes first, thus get fresh codes placed exactly where their residuals lie.
/// </summary>
public static class DeadCodeRemedy
{
    /// <summary>The codes whose EMA hits are below <paramref name="margin"/> at every scale, ascending.</summary>
    public static long[] DeadCodes(MultiScaleQuantizer quantizer, double margin)
    {
        using var noGrad = no_grad();
        using var maxHits = quantizer.EmaVocabHits.max(0).values;
        using var dead = maxHits.lt(margin).nonzero().view(-1);
        return dead.cpu().data<long>().ToArray();
    }

    /// <summary>The usage margin for a batch of <paramref name="batchSize"/> images: ratio · B·h·w / V.</summary>
    public static double Margin(VqVae vae, long batchSize, double ratio) =>
        ratio * batchSize * vae.Config.LatentSize * vae.Config.LatentSize / vae.Config.VocabSize;

    /// <summary>
    /// Re-seeds dead codes from <paramref name="residuals"/> (per scale (B, Cvae, pn, pn), as
    /// <see cref="QuantizeResult.SearchedResiduals"/>). Returns what was done; the caller resets optimizer moments of
    /// the returned rows.
    /// </summary>
    public static DeadCodeReport Apply(MultiScaleQuantizer quantizer, IReadOnlyList<Tensor> residuals, double margin, Generator generator)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var dead = DeadCodes(quantizer, margin);
        int scales = residuals.Count;
        var perScale = new int[scales];
        if (dead.Length == 0) return new DeadCodeReport(0, perScale, []);

        // Candidate rows per scale, in a random order drawn from the generator (scale by scale, coarse first).
        var rows = new Tensor[scales];
        var order = new long[scales][];
        for (int si = 0; si < scales; si++)
        {
            var r = residuals[si];
            rows[si] = r.permute(0, 2, 3, 1).reshape(-1, r.shape[1]);
            order[si] = randperm(rows[si].shape[0], generator: generator).data<long>().ToArray();
        }
        // Dead codes themselves in a random order, so the scale each gets does not depend on its index.
        var deadOrder = randperm(dead.Length, generator: generator).data<long>().ToArray();

        var targets = new List<long>();
        var sources = new List<Tensor>();
        var used = new int[scales];
        int si2 = 0;
        foreach (var d in deadOrder)
        {
            int tries = 0;
            while (tries < scales && used[si2] >= order[si2].Length) { si2 = (si2 + 1) % scales; tries++; }
            if (tries == scales) break;
            targets.Add(dead[(int)d]);
            sources.Add(rows[si2][order[si2][used[si2]]]);
            used[si2]++;
            perScale[si2]++;
            si2 = (si2 + 1) % scales;
        }
        var idx = tensor(targets.ToArray(), dtype: int64, device: quantizer.Codebook.weight!.device);
        var values = stack(sources).to(quantizer.Codebook.weight!.dtype);
        quantizer.Codebook.weight!.index_copy_(0, idx, values);
        return new DeadCodeReport(dead.Length, perScale, targets.ToArray());
    }
}
