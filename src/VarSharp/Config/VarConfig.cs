using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace VarSharp.Config;

/// <summary>
/// Hyper-parameters of the VAR transformer (the <c>var</c> block of a bundle's config.json, in snake_case), plus the two
/// tokenizer numbers the transformer needs: <see cref="VocabSize"/> (V, the head's width) and <see cref="Cvae"/>
/// (the latent width that <c>word_embed</c> reads). Derived values (L, first_l, begin_ends, ffn_hidden, …) are
/// computed, never stored.
/// </summary>
public sealed record VarConfig
{
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
    };

    public required int NumClasses { get; init; }
    public required int Depth { get; init; }
    public required int EmbedDim { get; init; }
    public required int NumHeads { get; init; }
    public double MlpRatio { get; init; } = 4.0;
    public double NormEps { get; init; } = 1e-6;
    public required bool SharedAln { get; init; }
    public required bool AttnL2Norm { get; init; }
    public double CondDropRate { get; init; } = 0.1;
    public double DropRate { get; init; }
    public double AttnDropRate { get; init; }
    public double DropPathRate { get; init; }
    public required int[] PatchNums { get; init; }

    /// <summary>Codebook size V of the tokenizer (the <c>vqvae</c> block's vocab_size).</summary>
    public required int VocabSize { get; init; }

    /// <summary>Latent channels of the tokenizer (the <c>vqvae</c> block's z_channels).</summary>
    public required int Cvae { get; init; }

    // ---- derived -------------------------------------------------------------------------------------------------

    /// <summary>Total number of tokens, Σ pn².</summary>
    [JsonIgnore] public int L => PatchNums.Sum(pn => pn * pn);

    /// <summary>Tokens of the first scale, patch_nums[0]².</summary>
    [JsonIgnore] public int FirstL => PatchNums[0] * PatchNums[0];

    [JsonIgnore] public int NumScales => PatchNums.Length;

    [JsonIgnore] public int HeadDim => EmbedDim / NumHeads;

    /// <summary>Hidden width of the FFN, round(C·mlp_ratio) with Python's round-half-to-even.</summary>
    [JsonIgnore] public int FfnHidden => (int)Math.Round(EmbedDim * MlpRatio, MidpointRounding.ToEven);

    /// <summary>Softmax scale: 1 with attn_l2_norm (the learned per-head scale does the work), else 0.25/√head_dim.</summary>
    [JsonIgnore] public double AttnScale => AttnL2Norm ? 1.0 : 0.25 / Math.Sqrt(HeadDim);

    /// <summary>Upper clamp of scale_mul_1H11 (ln 100).</summary>
    [JsonIgnore] public double MaxScaleMul => Math.Log(100.0);

    /// <summary>[begin, end) of every scale's tokens in the length-L sequence.</summary>
    [JsonIgnore]
    public IReadOnlyList<(int Begin, int End)> BeginEnds
    {
        get
        {
            var list = new List<(int, int)>(PatchNums.Length);
            int cur = 0;
            foreach (var pn in PatchNums)
            {
                list.Add((cur, cur + pn * pn));
                cur += pn * pn;
            }
            return list;
        }
    }

    /// <summary>
    /// Stochastic-depth probability of every block: torch.linspace(0, drop_path_rate, depth) in float32, as the reference
    /// computes it (libtorch's kernel steps from both ends, which a formula of our own would match only to an ulp).
    /// </summary>
    [JsonIgnore]
    public IReadOnlyList<double> DropPathPerBlock
    {
        get
        {
            using var rates = TorchSharp.torch.linspace(0, DropPathRate, Depth, dtype: TorchSharp.torch.ScalarType.Float32);
            return rates.data<float>().Select(r => (double)r).ToArray();
        }
    }

    // ---- validation ----------------------------------------------------------------------------------------------

    /// <summary>Throws <see cref="VarSharpException"/> (one sentence) when the configuration cannot build a model.</summary>
    public VarConfig Validate()
    {
        static void Fail(string msg) => throw new VarSharpException(msg);

        if (NumClasses < 1) Fail($"var config: num_classes must be positive, found {NumClasses}.");
        if (Depth < 1) Fail($"var config: depth must be positive, found {Depth}.");
        if (EmbedDim < 1) Fail($"var config: embed_dim must be positive, found {EmbedDim}.");
        if (NumHeads < 1) Fail($"var config: num_heads must be positive, found {NumHeads}.");
        if (EmbedDim % NumHeads != 0)
            Fail($"var config: embed_dim ({EmbedDim}) must be divisible by num_heads ({NumHeads}).");
        if (!(MlpRatio > 0) || FfnHidden < 1)
            Fail($"var config: mlp_ratio must give a positive FFN width, found mlp_ratio {MlpRatio} (ffn_hidden {FfnHidden}).");
        if (!(NormEps > 0)) Fail($"var config: norm_eps must be positive, found {NormEps}.");
        if (!(CondDropRate >= 0 && CondDropRate <= 1)) Fail($"var config: cond_drop_rate must be in [0, 1], found {CondDropRate}.");
        if (!(DropRate >= 0 && DropRate < 1)) Fail($"var config: drop_rate must be in [0, 1), found {DropRate}.");
        if (!(AttnDropRate >= 0 && AttnDropRate < 1)) Fail($"var config: attn_drop_rate must be in [0, 1), found {AttnDropRate}.");
        if (!(DropPathRate >= 0 && DropPathRate < 1)) Fail($"var config: drop_path_rate must be in [0, 1), found {DropPathRate}.");
        if (PatchNums is null || PatchNums.Length == 0) Fail("var config: patch_nums must list at least one scale, found none.");
        for (int i = 0; i < PatchNums!.Length; i++)
        {
            if (PatchNums[i] < 1) Fail($"var config: patch_nums must be positive, found {PatchNums[i]} at index {i}.");
            if (i > 0 && PatchNums[i] <= PatchNums[i - 1])
                Fail($"var config: patch_nums must be strictly increasing, found {PatchNums[i - 1]} then {PatchNums[i]} ([{string.Join(", ", PatchNums)}]).");
        }
        if (VocabSize < 1) Fail($"var config: vocab_size must be positive, found {VocabSize}.");
        if (Cvae < 1) Fail($"var config: cvae (the tokenizer's z_channels) must be positive, found {Cvae}.");
        return this;
    }

    // ---- presets -------------------------------------------------------------------------------------------------

    private static readonly int[] PatchNums256 = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16];
    private static readonly int[] PatchNums512 = [1, 2, 3, 4, 6, 9, 13, 18, 24, 32];

    /// <summary>
    /// The released ImageNet models as <c>build_vae_var</c> builds them: heads = depth, width = 64·depth,
    /// drop_path = 0.1·depth/24, 1000 classes, attn_l2_norm, V = 4096, Cvae = 32. d16/d20/d24/d30 are 256 px without
    /// shared AdaLN; d36 is 512 px with shared AdaLN.
    /// </summary>
    public static VarConfig Preset(int depth) => depth switch
    {
        16 or 20 or 24 or 30 => Official(depth, sharedAln: false, PatchNums256),
        36 => Official(36, sharedAln: true, PatchNums512),
        _ => throw new VarSharpException($"no VAR preset for depth {depth}; the presets are d16, d20, d24, d30 and d36."),
    };

    public static VarConfig D16 => Preset(16);
    public static VarConfig D20 => Preset(20);
    public static VarConfig D24 => Preset(24);
    public static VarConfig D30 => Preset(30);
    public static VarConfig D36 => Preset(36);

    private static VarConfig Official(int depth, bool sharedAln, int[] patchNums) => new()
    {
        NumClasses = 1000,
        Depth = depth,
        EmbedDim = 64 * depth,
        NumHeads = depth,
        MlpRatio = 4.0,
        NormEps = 1e-6,
        SharedAln = sharedAln,
        AttnL2Norm = true,
        CondDropRate = 0.1,
        DropPathRate = 0.1 * depth / 24,
        PatchNums = (int[])patchNums.Clone(),
        VocabSize = 4096,
        Cvae = 32,
    };

    // ---- JSON ----------------------------------------------------------------------------------------------------

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Reads a snake_case VarConfig (as written by <see cref="ToJson"/>) and validates it.</summary>
    public static VarConfig FromJson(string json)
    {
        try
        {
            return (JsonSerializer.Deserialize<VarConfig>(json, JsonOptions)
                    ?? throw new VarSharpException("var config: the JSON is null, expected an object.")).Validate();
        }
        catch (JsonException e)
        {
            throw new VarSharpException($"var config: cannot read the JSON ({e.Message}).", e);
        }
    }

    /// <summary>
    /// Builds the config from a golden/bundle config.json root: the <c>var</c> block, with vocab_size and cvae taken
    /// from the <c>vqvae</c> block (vocab_size, z_channels). Derived values stored in the block are ignored here.
    /// </summary>
    public static VarConfig FromGoldenConfig(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object
            || !root.TryGetProperty("var", out var varBlock)
            || !root.TryGetProperty("vqvae", out var vqBlock))
            throw new VarSharpException("config.json: expected an object with a \"var\" and a \"vqvae\" block.");
        if (!vqBlock.TryGetProperty("vocab_size", out var v) || !vqBlock.TryGetProperty("z_channels", out var z))
            throw new VarSharpException("config.json: the \"vqvae\" block must give vocab_size and z_channels.");

        var obj = JsonNode.Parse(varBlock.GetRawText())!.AsObject();
        obj["vocab_size"] = v.GetInt32();
        obj["cvae"] = z.GetInt32();
        return FromJson(obj.ToJsonString());
    }

    // ---- equality (records compare arrays by reference; compare patch_nums by value) ------------------------------

    public bool Equals(VarConfig? other) =>
        other is not null
        && NumClasses == other.NumClasses && Depth == other.Depth && EmbedDim == other.EmbedDim
        && NumHeads == other.NumHeads && MlpRatio.Equals(other.MlpRatio) && NormEps.Equals(other.NormEps)
        && SharedAln == other.SharedAln && AttnL2Norm == other.AttnL2Norm
        && CondDropRate.Equals(other.CondDropRate) && DropRate.Equals(other.DropRate)
        && AttnDropRate.Equals(other.AttnDropRate) && DropPathRate.Equals(other.DropPathRate)
        && PatchNums.AsSpan().SequenceEqual(other.PatchNums) && VocabSize == other.VocabSize && Cvae == other.Cvae;

    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(NumClasses); h.Add(Depth); h.Add(EmbedDim); h.Add(NumHeads); h.Add(MlpRatio); h.Add(SharedAln);
        h.Add(AttnL2Norm); h.Add(VocabSize); h.Add(Cvae);
        foreach (var pn in PatchNums) h.Add(pn);
        return h.GetHashCode();
    }

    public override string ToString() =>
        $"VarConfig(depth {Depth}, C {EmbedDim}, heads {NumHeads}, classes {NumClasses}, V {VocabSize}, Cvae {Cvae}, " +
        $"patch_nums [{string.Join(",", PatchNums)}], shared_aln {SharedAln}, attn_l2_norm {AttnL2Norm})";
}
