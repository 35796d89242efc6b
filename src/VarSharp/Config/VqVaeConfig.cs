using System.Text.Json;
using System.Text.Json.Serialization;

namespace VarSharp.Config;

/// <summary>
/// Every hyper-parameter of the multi-scale VQ-VAE (the `vqvae` block of config.json). The reference hard-codes the
/// encoder/decoder layout (ch_mult 1,1,2,2,4, two res blocks, attention on); here it is configurable, with the
/// reference values as defaults.
/// </summary>
public sealed record VqVaeConfig
{
    public int VocabSize { get; init; } = 4096;
    public int ZChannels { get; init; } = 32;
    public int Ch { get; init; } = 160;
    public int[] ChMult { get; init; } = [1, 1, 2, 2, 4];
    public int NumResBlocks { get; init; } = 2;
    public double Dropout { get; init; }
    public bool UsingSa { get; init; } = true;
    public bool UsingMidSa { get; init; } = true;
    public int InChannels { get; init; } = 3;
    public int QuantConvKs { get; init; } = 3;
    public double QuantResi { get; init; } = 0.5;
    public int ShareQuantResi { get; init; } = 4;
    public int DefaultQresiCounts { get; init; }
    public bool UsingZnorm { get; init; }
    public double Beta { get; init; } = 0.25;
    public int[] VPatchNums { get; init; } = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16];

    /// <summary>GroupNorm in the reference always has 32 groups.</summary>
    public const int NormGroups = 32;

    [JsonIgnore] public int Downsample => 1 << (ChMult.Length - 1);
    [JsonIgnore] public int LatentSize => VPatchNums[^1];
    [JsonIgnore] public int ImageSize => LatentSize * Downsample;
    [JsonIgnore] public int NumScales => VPatchNums.Length;
    [JsonIgnore] public bool HasPhiConv => Math.Abs(QuantResi) > 1e-6;

    /// <summary>Number of Phi convs: share_quant_resi 0 → one per scale (or default_qresi_counts), 1 → one, n → n.</summary>
    [JsonIgnore]
    public int PhiCount => ShareQuantResi switch
    {
        0 => DefaultQresiCounts > 0 ? DefaultQresiCounts : NumScales,
        1 => 1,
        _ => ShareQuantResi,
    };

    /// <summary>The released tokenizer, vae_ch160v4096z32.pth, at 256 px.</summary>
    public static VqVaeConfig Official256 { get; } = new();

    /// <summary>The same tokenizer with the 512 px patch_nums used by var_d36.</summary>
    public static VqVaeConfig Official512 { get; } = new() { VPatchNums = [1, 2, 3, 4, 6, 9, 13, 18, 24, 32] };

    public VqVaeConfig Validate()
    {
        Require(VocabSize >= 2, $"vocab_size must be at least 2 but is {VocabSize}");
        Require(ZChannels >= 1, $"z_channels must be positive but is {ZChannels}");
        Require(Ch >= 1 && ChMult.Length >= 1 && ChMult.All(m => m >= 1), "ch and every ch_mult entry must be positive");
        foreach (var c in ChMult.Select(m => Ch * m).Prepend(Ch))
            Require(c % NormGroups == 0, $"every channel count ch*ch_mult must be divisible by {NormGroups} (GroupNorm groups) but {c} is not");
        Require(NumResBlocks >= 1, $"num_res_blocks must be positive but is {NumResBlocks}");
        Require(InChannels is 1 or 3, $"in_channels must be 1 or 3 but is {InChannels}");
        Require(QuantConvKs is >= 1 && QuantConvKs % 2 == 1, $"quant_conv_ks must be a positive odd number but is {QuantConvKs}");
        Require(ShareQuantResi >= 0, $"share_quant_resi must be 0, 1 or a count ≥ 2 but is {ShareQuantResi}");
        Require(VPatchNums.Length >= 2, $"v_patch_nums needs at least 2 scales but has {VPatchNums.Length}");
        for (int i = 0; i < VPatchNums.Length; i++)
            Require(VPatchNums[i] >= 1 && (i == 0 || VPatchNums[i] > VPatchNums[i - 1]),
                $"v_patch_nums must be positive and strictly increasing but is [{string.Join(",", VPatchNums)}]");
        Require(Beta >= 0 && double.IsFinite(Beta), $"beta must be a finite number ≥ 0 but is {Beta}");
        // The reference uses |quant_resi| as φ's mixing ratio, so a sign is harmless; a ratio beyond 1 is not a mix.
        Require(double.IsFinite(QuantResi) && Math.Abs(QuantResi) <= 1, $"quant_resi must be a finite number in [-1, 1] but is {QuantResi}");
        Require(double.IsFinite(Dropout) && Dropout is >= 0 and < 1, $"dropout must be in [0, 1) but is {Dropout}");
        return this;
    }

    /// <summary>
    /// Phi selection ticks exactly as numpy.linspace computes them (start + i·step, last element set to stop), because
    /// the official K=4, S=10 case has exact ties that only numpy's rounding resolves.
    /// </summary>
    public double[] PhiTicks()
    {
        int k = PhiCount;
        double start = k == 4 ? 1.0 / 3 / k : 1.0 / 2 / k;
        double stop = 1 - start;
        var ticks = new double[k];
        if (k == 1) { ticks[0] = start; return ticks; }
        double step = (stop - start) / (k - 1);
        for (int i = 0; i < k; i++) ticks[i] = i * step + start;
        ticks[k - 1] = stop;
        return ticks;
    }

    /// <summary>Which Phi conv each scale uses: argmin |tick − si/(S−1)|, first index on ties.</summary>
    public int[] PhiIndexPerScale()
    {
        if (ShareQuantResi == 1) return new int[NumScales];
        var ticks = PhiTicks();
        var result = new int[NumScales];
        for (int si = 0; si < NumScales; si++)
        {
            double at = (double)si / (NumScales - 1);
            int best = 0;
            for (int i = 1; i < ticks.Length; i++)
                if (Math.Abs(ticks[i] - at) < Math.Abs(ticks[best] - at)) best = i;
            result[si] = best;
        }
        return result;
    }

    public static VqVaeConfig FromJson(JsonElement element) => JsonConfig.Deserialize<VqVaeConfig>(element, "vqvae").Validate();

    public bool Equals(VqVaeConfig? other) =>
        other is not null && JsonSerializer.Serialize(this, JsonConfig.Options) == JsonSerializer.Serialize(other, JsonConfig.Options);

    public override int GetHashCode() => JsonSerializer.Serialize(this, JsonConfig.Options).GetHashCode();

    private static void Require(bool ok, string sentence)
    {
        if (!ok) throw new VarSharpException($"Invalid VQ-VAE config: {sentence}.");
    }
}
