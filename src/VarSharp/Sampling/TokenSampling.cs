using static TorchSharp.torch;

namespace VarSharp.Sampling;

/// <summary>
/// The random parts of sampling, drawing only from generators passed in: the multinomial draw of
/// <c>sample_with_top_k_top_p_</c> and the reference's <c>gumbel_softmax_with_rng</c>. Each has a shared-generator form
/// (one generator for the whole batch, consumed exactly as the reference consumes its <c>self.rng</c>) and a per-row
/// form (row b draws from generators[b], as if it were sampled alone with that generator).
/// </summary>
public static class TokenSampling
{
    /// <summary>One token per position from softmax(logits) (B, l, V) → (B, l) int64 (multinomial with replacement).</summary>
    public static Tensor Multinomial(Tensor logits_BlV, Generator generator)
    {
        CheckLogits(logits_BlV);
        long b = logits_BlV.shape[0], l = logits_BlV.shape[1], v = logits_BlV.shape[2];
        using var scope = NewDisposeScope();
        var probs = logits_BlV.softmax(-1).view(-1, v);
        return multinomial(probs, 1, replacement: true, generator: generator).view(b, l).MoveToOuterDisposeScope();
    }

    /// <summary>Per-row form of <see cref="Multinomial(Tensor, Generator)"/>: row b draws from <paramref name="generators"/>[b].</summary>
    public static Tensor Multinomial(Tensor logits_BlV, IReadOnlyList<Generator> generators)
    {
        CheckLogits(logits_BlV);
        CheckRows(logits_BlV, generators);
        using var scope = NewDisposeScope();
        var probs_BlV = logits_BlV.softmax(-1);
        var rows = new Tensor[generators.Count];
        for (int i = 0; i < rows.Length; i++)
            rows[i] = multinomial(probs_BlV[i], 1, replacement: true, generator: generators[i]).view(-1);
        return stack(rows, 0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Gumbel-softmax with an explicit generator (gumbel_softmax_with_rng): softmax((logits + g) / tau) over
    /// <paramref name="dim"/> with g = −log(Exp(1)) noise; with <paramref name="hard"/> the straight-through one-hot.
    /// </summary>
    public static Tensor GumbelSoftmax(Tensor logits, double tau, Generator generator, bool hard = false, int dim = -1)
    {
        ArgumentNullException.ThrowIfNull(logits);
        using var scope = NewDisposeScope();
        var gumbels = empty_like(logits).exponential_(1.0, generator).log_().neg_();
        return SoftmaxOf(logits, gumbels, tau, hard, dim).MoveToOuterDisposeScope();
    }

    /// <summary>Per-row form of <see cref="GumbelSoftmax(Tensor, double, Generator, bool, int)"/> over the last dimension.</summary>
    public static Tensor GumbelSoftmax(Tensor logits, double tau, IReadOnlyList<Generator> generators, bool hard = false)
    {
        ArgumentNullException.ThrowIfNull(logits);
        CheckRows(logits, generators);
        using var scope = NewDisposeScope();
        var rows = new Tensor[generators.Count];
        for (int i = 0; i < rows.Length; i++)
            rows[i] = empty_like(logits[i]).exponential_(1.0, generators[i]).log_().neg_();
        return SoftmaxOf(logits, stack(rows, 0), tau, hard, -1).MoveToOuterDisposeScope();
    }

    private static Tensor SoftmaxOf(Tensor logits, Tensor gumbels, double tau, bool hard, int dim)
    {
        if (!(tau > 0)) throw new VarSharpException($"the Gumbel-softmax temperature must be positive, found {tau}.");
        var ySoft = logits.add(gumbels).div_(tau).softmax(dim);
        if (!hard) return ySoft;
        var index = ySoft.max(dim, keepdim: true).indexes;
        var yHard = zeros_like(logits).scatter_(dim, index, ones_like(index, dtype: logits.dtype));
        return yHard.sub(ySoft.detach()).add_(ySoft);
    }

    private static void CheckLogits(Tensor logits_BlV)
    {
        ArgumentNullException.ThrowIfNull(logits_BlV);
        if (logits_BlV.dim() != 3)
            throw new VarSharpException($"logits to sample from must be (B, l, V), found ({string.Join(", ", logits_BlV.shape)}).");
    }

    private static void CheckRows(Tensor t, IReadOnlyList<Generator> generators)
    {
        ArgumentNullException.ThrowIfNull(generators);
        if (t.shape[0] != generators.Count)
            throw new VarSharpException($"per-row sampling needs one generator per row: {t.shape[0]} rows but {generators.Count} generators.");
    }
}
