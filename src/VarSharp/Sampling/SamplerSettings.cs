using System.Globalization;
using VarSharp.Config;
using static TorchSharp.torch;

namespace VarSharp.Sampling;

/// <summary>
/// How <see cref="VarSampler"/> turns logits into tokens, with the reference's names: classifier-free guidance
/// <see cref="Cfg"/> (t = cfg·si/(S−1), logits = (1+t)·cond − t·uncond), <see cref="TopK"/> and <see cref="TopP"/>
/// filtering (0 turns either off) and <see cref="MoreSmooth"/> (Gumbel-softmax smoothing of the embeddings fed back, for
/// visualisation only, as in the reference).
/// </summary>
public sealed record SamplerSettings
{
    public required double Cfg { get; init; }
    public required int TopK { get; init; }
    public required double TopP { get; init; }
    public bool MoreSmooth { get; init; }

    /// <summary>Throws a one-sentence <see cref="VarSharpException"/> unless every value is usable with this model.</summary>
    public SamplerSettings Validate(VarConfig model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!(Cfg >= 0) || double.IsInfinity(Cfg))
            throw new VarSharpException($"cfg (guidance scale) must be a finite number ≥ 0, found {Fmt(Cfg)}.");
        if (TopK < 0) throw new VarSharpException($"top-k must be 0 (off) or a positive number of tokens to keep, found {TopK}.");
        if (TopK > model.VocabSize)
            throw new VarSharpException($"top-k must be at most the vocabulary size {model.VocabSize} (or 0 for off), found {TopK}.");
        if (!(TopP >= 0 && TopP <= 1)) throw new VarSharpException($"top-p must be in [0, 1] (0 is off), found {Fmt(TopP)}.");
        return this;
    }

    internal static string Fmt(double v) => v.ToString("g", CultureInfo.InvariantCulture);
}

/// <summary>
/// Where a sampling run draws its randomness from. <see cref="Shared"/>: one generator for the whole batch, seeded once
/// and consumed exactly as <c>autoregressive_infer_cfg(g_seed=seed)</c> consumes <c>self.rng</c> (labels if drawn, then
/// per scale the multinomial draw, then the Gumbel noise) — the reference's numbers, but a sample depends on its batch
/// mates. <see cref="PerSample"/>: row i has its own generator seeded with seeds[i], so row i is exactly what a Shared
/// run of batch size 1 with that seed would give, whatever else is in the batch.
/// </summary>
public sealed class SampleRng
{
    private SampleRng(long? shared, long[]? perSample)
    {
        SharedSeed = shared;
        RowSeeds = perSample;
    }

    /// <summary>The seed of the single generator, or null for per-sample generators.</summary>
    public long? SharedSeed { get; }

    /// <summary>The seed of each row's generator, or null for a shared generator.</summary>
    public IReadOnlyList<long>? RowSeeds { get; }

    public static SampleRng Shared(long seed) => new(seed, null);

    public static SampleRng PerSample(params long[] seeds)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        return new(null, (long[])seeds.Clone());
    }

    /// <summary>Per-sample generators seeded first, first+1, …, first+count−1.</summary>
    public static SampleRng PerSampleFrom(long first, int count) =>
        new(null, Enumerable.Range(0, count).Select(i => unchecked(first + i)).ToArray());

    /// <summary>A generator on the device the draws happen on (a CUDA multinomial refuses a CPU generator).</summary>
    internal static Generator NewGenerator(long seed, Device device) => new(unchecked((ulong)seed), device);

    public override string ToString() =>
        SharedSeed is { } s ? $"shared seed {s}" : $"per-sample seeds [{string.Join(", ", RowSeeds!)}]";
}

/// <summary>What a sampling run returns besides images, tokens and the final f_hat.</summary>
[Flags]
public enum SampleExtras
{
    None = 0,
    /// <summary>The logits after guidance (B, L, V) and the raw conditional/unconditional logits (2B, L, V).</summary>
    Logits = 1,
    /// <summary>The image decoded from f_hat after every scale, coarse to fine, (S, B, 3, H, W) in [0, 1].</summary>
    ScaleImages = 2,
}
