using static TorchSharp.torch;

namespace VarSharp.Sampling;

/// <summary>
/// Top-k and top-p (nucleus) filtering of logits over the last dimension, exactly as the reference's
/// <c>sample_with_top_k_top_p_</c> does it: no randomness, and the methods ending in <c>_</c> modify their argument in
/// place (removed entries become −∞) and return it, like the reference.
/// </summary>
public static class LogitFilters
{
    /// <summary>
    /// Keeps, per row, every logit that is ≥ the k-th largest value (so ties at the k-th value all survive) and sets
    /// the rest to −∞ in place. <paramref name="topK"/> = 0 leaves the logits unchanged; k larger than the vocabulary
    /// (the last dimension) or negative is an error.
    /// </summary>
    public static Tensor TopK_(Tensor logits, int topK)
    {
        ArgumentNullException.ThrowIfNull(logits);
        long v = logits.shape[^1];
        if (topK < 0) throw new VarSharpException($"top-k must be 0 (off) or a positive count of tokens to keep, found {topK}.");
        if (topK > v) throw new VarSharpException($"top-k must be at most the vocabulary size {v}, found {topK}.");
        if (topK == 0) return logits;
        using var scope = NewDisposeScope();
        var (values, _) = logits.topk(topK, dim: -1, largest: true, sorted: false);
        var kth = values.amin([-1L], keepdim: true);
        logits.masked_fill_(logits.lt(kth), double.NegativeInfinity);
        return logits;
    }

    /// <summary>
    /// Nucleus filtering in place: sorts each row ascending, removes the entries whose cumulative softmax probability is
    /// ≤ 1 − p, but always keeps the largest entry. <paramref name="topP"/> = 0 leaves the logits unchanged; values
    /// outside [0, 1] are an error.
    /// </summary>
    public static Tensor TopP_(Tensor logits, double topP)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (!(topP >= 0 && topP <= 1)) throw new VarSharpException($"top-p must be in [0, 1] (0 is off), found {topP}.");
        if (topP == 0) return logits;
        using var scope = NewDisposeScope();
        var (sorted, sortedIdx) = logits.sort(dim: -1, descending: false);
        var sortedRemove = sorted.softmax(-1).cumsum(-1).le(1 - topP);
        sortedRemove.narrow(-1, sortedRemove.shape[^1] - 1, 1).fill_(false);
        // Undo the sort: position sortedIdx[j] of the row takes the decision made for sorted entry j.
        var remove = sortedRemove.scatter(-1, sortedIdx, sortedRemove);
        logits.masked_fill_(remove, double.NegativeInfinity);
        return logits;
    }

    /// <summary>Top-k then top-p, in place (the order of the reference).</summary>
    public static Tensor TopKTopP_(Tensor logits, int topK, double topP) => TopP_(TopK_(logits, topK), topP);

    /// <summary>The same filtering on a copy; <paramref name="logits"/> is left untouched.</summary>
    public static Tensor TopKTopP(Tensor logits, int topK, double topP)
    {
        var copy = logits.clone();
        try
        {
            return TopKTopP_(copy, topK, topP);
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }
}
