using System.Globalization;
using VarSharp.Config;

namespace VarSharp.Checkpoints;

/// <summary>
/// Explicit choices for <c>varsharp import</c>. Anything a state dict determines is inferred from it and an explicit
/// value must agree; values no state dict holds (quant_resi, using_znorm, heads without attn_l2_norm) default to the
/// official models' and can be given here.
/// </summary>
public sealed record ImportOptions
{
    /// <summary>Scales (pn per scale); needed when the checkpoints do not pin them down (e.g. a 10-scale VQ-VAE alone).</summary>
    public int[]? PatchNums { get; init; }

    /// <summary>Expected VAR depth; an error if the checkpoint has another number of blocks.</summary>
    public int? Depth { get; init; }

    /// <summary>VAR attention heads; read from scale_mul_1H11 when attn_l2_norm, otherwise depth (the official rule) when width = 64·depth.</summary>
    public int? Heads { get; init; }

    /// <summary>The Phi mixing ratio (official 0.5); only its being non-zero shows in the keys.</summary>
    public double? QuantResi { get; init; }

    /// <summary>Whether the VQ-VAE searches codes by cosine similarity (official: false); invisible in the weights.</summary>
    public bool UsingZnorm { get; init; }
}

/// <summary>
/// Recovers VqVaeConfig / VarConfig from state-dict keys and shapes (keys without the `vae.`/`var.` prefix), the way the
/// official code lays them out. Where the weights leave a choice open it takes the official value, and where even that
/// is ambiguous it fails with one sentence saying which option settles it.
/// </summary>
public static class ArchitectureInference
{
    /// <summary>The official 256 px and 512 px scale schedules.</summary>
    public static readonly IReadOnlyList<int[]> OfficialPatchNums =
    [
        [1, 2, 3, 4, 5, 6, 8, 10, 13, 16],
        [1, 2, 3, 4, 6, 9, 13, 18, 24, 32],
    ];

    // ---- VAR -----------------------------------------------------------------------------------------------------

    /// <param name="shapes">key → shape of the VAR state dict.</param>
    /// <param name="levelPerToken">the values of lvl_1L when the checkpoint has it (they give patch_nums exactly).</param>
    public static VarConfig InferVar(IReadOnlyDictionary<string, long[]> shapes, long[]? levelPerToken, ImportOptions options)
    {
        const string What = "VAR checkpoint";
        long[] Shape(string key) => shapes.TryGetValue(key, out var s) ? s
            : throw new VarSharpException($"{What}: it lacks '{key}', so it is not a VAR state dict in the official layout.");

        int depth = CountIndexed(shapes, i => $"blocks.{i}.attn.mat_qkv.weight");
        if (depth == 0) Shape("blocks.0.attn.mat_qkv.weight");
        if (options.Depth is { } d && d != depth)
            throw new VarSharpException($"{What}: --depth {d} was given but the checkpoint has {depth} blocks.");

        var wordEmbed = Require2D(Shape("word_embed.weight"), "word_embed.weight", What);
        int width = wordEmbed[0], cvae = wordEmbed[1];
        int vocab = Require2D(Shape("head.weight"), "head.weight", What)[0];
        int numClasses = Require2D(Shape("class_emb.weight"), "class_emb.weight", What)[0] - 1;
        int scales = Require2D(Shape("lvl_embed.weight"), "lvl_embed.weight", What)[0];
        var pos = Shape("pos_1LC");
        if (pos.Length != 3 || pos[0] != 1 || pos[2] != width)
            throw new VarSharpException($"{What}: pos_1LC has shape [{string.Join(", ", pos)}], expected [1, L, {width}].");
        int tokens = checked((int)pos[1]);
        int ffnHidden = Require2D(Shape("blocks.0.ffn.fc1.weight"), "blocks.0.ffn.fc1.weight", What)[0];

        bool sharedAln = shapes.ContainsKey("shared_ada_lin.1.weight");
        if (!sharedAln) Shape("blocks.0.ada_lin.1.weight");
        bool l2Norm = shapes.TryGetValue("blocks.0.attn.scale_mul_1H11", out var scaleMul);

        int heads;
        if (l2Norm)
        {
            if (scaleMul!.Length != 4) throw new VarSharpException($"{What}: blocks.0.attn.scale_mul_1H11 has {scaleMul.Length} dimensions, expected (1, heads, 1, 1).");
            heads = checked((int)scaleMul[1]);
            if (options.Heads is { } h && h != heads)
                throw new VarSharpException($"{What}: --heads {h} was given but scale_mul_1H11 holds {heads} heads.");
        }
        else if (options.Heads is { } h) heads = h;
        else if (width == 64 * depth) heads = depth;
        else
            throw new VarSharpException(
                $"{What}: the number of attention heads is not recorded without attn_l2_norm and width {width} is not the official 64·depth ({64 * depth}), so pass --heads.");

        int[] patchNums = VarPatchNums(levelPerToken, scales, tokens, options.PatchNums, What);

        var cfg = new VarConfig
        {
            NumClasses = numClasses,
            Depth = depth,
            EmbedDim = width,
            NumHeads = heads,
            MlpRatio = (double)ffnHidden / width,
            SharedAln = sharedAln,
            AttnL2Norm = l2Norm,
            PatchNums = patchNums,
            VocabSize = vocab,
            Cvae = cvae,
        };
        // Training-only rates are not in the weights; the released models were trained with the presets' values.
        if (depth is 16 or 20 or 24 or 30 or 36)
        {
            var preset = VarConfig.Preset(depth);
            if (preset with { DropPathRate = cfg.DropPathRate } == cfg) cfg = cfg with { DropPathRate = preset.DropPathRate };
        }
        return cfg.Validate();
    }

    private static int[] VarPatchNums(long[]? levels, int scales, int tokens, int[]? given, string what)
    {
        if (given is not null)
        {
            if (given.Length != scales || given.Sum(p => (long)p * p) != tokens)
                throw new VarSharpException(
                    $"{what}: --patch-nums {Join(given)} gives {given.Length} scales and {given.Sum(p => (long)p * p)} tokens but the checkpoint has {scales} scales and {tokens} tokens.");
            // Where the checkpoint records its schedule (lvl_1L), a given one must be the same, not merely as long.
            if (levels is not null && FromLevels(levels, scales, tokens, what) is var recorded && !recorded.SequenceEqual(given))
                throw new VarSharpException($"{what}: --patch-nums {Join(given)} differs from the scales {Join(recorded)} its lvl_1L records; leave the option out.");
            return given;
        }
        if (levels is not null) return FromLevels(levels, scales, tokens, what);
        var matches = OfficialPatchNums.Where(p => p.Length == scales && p.Sum(x => x * x) == tokens).ToList();
        if (matches.Count == 1) return (int[])matches[0].Clone();
        throw new VarSharpException(
            $"{what}: {scales} scales with {tokens} tokens match no official schedule and there is no lvl_1L buffer to read them from, so pass --patch-nums.");
    }

    // lvl_1L lists each token's scale in order, so scale k's token count is pn_k².
    private static int[] FromLevels(long[] levels, int scales, int tokens, string what)
    {
        if (levels.Length != tokens)
            throw new VarSharpException($"{what}: lvl_1L has {levels.Length} entries but pos_1LC has {tokens} tokens.");
        var counts = new List<long>();
        long previous = -1;
        foreach (var level in levels)
        {
            if (level == previous) counts[^1]++;
            else if (level == previous + 1 && level < scales) counts.Add(1);
            else throw new VarSharpException($"{what}: lvl_1L is not the scale index of each token in order (it jumps from {previous} to {level}).");
            previous = level;
        }
        if (counts.Count != scales)
            throw new VarSharpException($"{what}: lvl_1L covers {counts.Count} scales but lvl_embed has {scales}.");
        var result = new int[scales];
        for (int k = 0; k < scales; k++)
        {
            int pn = (int)Math.Round(Math.Sqrt(counts[k]));
            if ((long)pn * pn != counts[k])
                throw new VarSharpException($"{what}: lvl_1L gives scale {k} {counts[k]} tokens, which is not a square pn².");
            result[k] = pn;
        }
        return result;
    }

    // ---- VQ-VAE --------------------------------------------------------------------------------------------------

    /// <param name="shapes">key → shape of the VQ-VAE state dict.</param>
    /// <param name="varPatchNums">the VAR's patch_nums when a VAR checkpoint is imported too (the two must agree).</param>
    public static VqVaeConfig InferVqVae(IReadOnlyDictionary<string, long[]> shapes, ImportOptions options, int[]? varPatchNums = null)
    {
        const string What = "VQ-VAE checkpoint";
        long[] Shape(string key) => shapes.TryGetValue(key, out var s) ? s
            : throw new VarSharpException($"{What}: it lacks '{key}', so it is not a VQ-VAE state dict in the official layout.");

        var embedding = Require2D(Shape("quantize.embedding.weight"), "quantize.embedding.weight", What);
        int vocab = embedding[0], cvae = embedding[1];
        var convIn = Shape("encoder.conv_in.weight");
        if (convIn.Length != 4) throw new VarSharpException($"{What}: encoder.conv_in.weight has {convIn.Length} dimensions, expected 4.");
        int ch = checked((int)convIn[0]), inChannels = checked((int)convIn[1]);

        int levels = CountIndexed(shapes, i => $"encoder.down.{i}.block.0.conv1.weight");
        if (levels == 0) Shape("encoder.down.0.block.0.conv1.weight");
        var chMult = new int[levels];
        for (int i = 0; i < levels; i++)
        {
            long outCh = Shape($"encoder.down.{i}.block.0.conv1.weight")[0];
            if (outCh % ch != 0)
                throw new VarSharpException($"{What}: encoder level {i} has {outCh} channels, not a multiple of ch = {ch}.");
            chMult[i] = checked((int)(outCh / ch));
        }
        int numResBlocks = CountIndexed(shapes, j => $"encoder.down.0.block.{j}.conv1.weight");
        bool usingSa = shapes.ContainsKey($"encoder.down.{levels - 1}.attn.0.qkv.weight");
        bool usingMidSa = shapes.ContainsKey("encoder.mid.attn_1.qkv.weight");
        var quantConv = Shape("quant_conv.weight");
        int quantConvKs = quantConv.Length == 4 ? checked((int)quantConv[2]) : throw new VarSharpException($"{What}: quant_conv.weight has {quantConv.Length} dimensions, expected 4.");

        // Phi variant from the key pattern: qresi_ls.K → K convs shared by ticks, qresi → one, quant_resi.{k} → one per scale.
        int partial = CountIndexed(shapes, k => $"quantize.quant_resi.qresi_ls.{k}.weight");
        bool shared = shapes.ContainsKey("quantize.quant_resi.qresi.weight");
        int perScale = CountIndexed(shapes, k => $"quantize.quant_resi.{k}.weight");
        if ((partial > 0 ? 1 : 0) + (shared ? 1 : 0) + (perScale > 0 ? 1 : 0) > 1)
            throw new VarSharpException($"{What}: it mixes quant_resi key patterns (qresi_ls.*, qresi, and per-scale), so its Phi layout is ambiguous.");
        bool hasPhi = partial > 0 || shared || perScale > 0;
        if (partial == 1)
            throw new VarSharpException($"{What}: it has a single quant_resi.qresi_ls.0 conv, a layout the official code never builds (share_quant_resi 1 uses quant_resi.qresi).");
        double quantResi = options.QuantResi ?? (hasPhi ? 0.5 : 0.0);
        if (hasPhi && Math.Abs(quantResi) <= 1e-6)
            throw new VarSharpException($"{What}: --quant-resi {quantResi} means no Phi convs, but the checkpoint has quant_resi weights.");
        if (!hasPhi && Math.Abs(quantResi) > 1e-6)
            throw new VarSharpException($"{What}: --quant-resi {quantResi} needs Phi convs, but the checkpoint has no quant_resi weights.");
        int share = partial > 0 ? partial : shared ? 1 : perScale > 0 ? 0 : VqVaeConfig.Official256.ShareQuantResi;

        int? scales = shapes.TryGetValue("quantize.ema_vocab_hit_SV", out var hits) && hits.Length == 2 ? checked((int)hits[0]) : null;
        int[] patchNums = VqVaePatchNums(scales, options.PatchNums, varPatchNums, What);
        int defaultQresiCounts = perScale > 0 && perScale != patchNums.Length ? perScale : 0;

        return new VqVaeConfig
        {
            VocabSize = vocab,
            ZChannels = cvae,
            Ch = ch,
            ChMult = chMult,
            NumResBlocks = numResBlocks,
            UsingSa = usingSa,
            UsingMidSa = usingMidSa,
            InChannels = inChannels,
            QuantConvKs = quantConvKs,
            QuantResi = quantResi,
            ShareQuantResi = share,
            DefaultQresiCounts = defaultQresiCounts,
            UsingZnorm = options.UsingZnorm,
            VPatchNums = patchNums,
        }.Validate();
    }

    private static int[] VqVaePatchNums(int? scales, int[]? given, int[]? fromVar, string what)
    {
        var chosen = given ?? fromVar;
        if (chosen is not null)
        {
            if (scales is { } s && chosen.Length != s)
                throw new VarSharpException(
                    $"{what}: {(given is not null ? "--patch-nums" : "the VAR checkpoint's patch_nums")} {Join(chosen)} has {chosen.Length} scales but ema_vocab_hit_SV has {s}.");
            return (int[])chosen.Clone();
        }
        var matches = OfficialPatchNums.Where(p => scales is null || p.Length == scales).ToList();
        if (matches.Count == 1) return (int[])matches[0].Clone();
        throw new VarSharpException(matches.Count == 0
            ? $"{what}: its {scales} scales match no official schedule, so pass --patch-nums (or import it together with its VAR checkpoint)."
            : $"{what}: the weights do not say which {(scales is { } n ? n.ToString(CultureInfo.InvariantCulture) + "-scale " : "")}schedule it was trained for ({string.Join(" or ", matches.Select(Join))}), so pass --patch-nums or import it together with its VAR checkpoint.");
    }

    // ---- helpers -------------------------------------------------------------------------------------------------

    private static int CountIndexed(IReadOnlyDictionary<string, long[]> shapes, Func<int, string> key)
    {
        int n = 0;
        while (shapes.ContainsKey(key(n))) n++;
        return n;
    }

    private static int[] Require2D(long[] shape, string key, string what)
    {
        if (shape.Length != 2 || shape[0] > int.MaxValue || shape[1] > int.MaxValue)
            throw new VarSharpException($"{what}: {key} has shape [{string.Join(", ", shape)}], expected a 2-D matrix.");
        return [(int)shape[0], (int)shape[1]];
    }

    private static string Join(int[] p) => string.Join(",", p);
}
