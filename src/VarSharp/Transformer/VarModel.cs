using TorchSharp;
using TorchSharp.Modules;
using VarSharp.Config;
using static TorchSharp.torch;

namespace VarSharp.Transformer;

/// <summary>
/// The VAR transformer ("next-scale prediction"). Field names are the PyTorch state-dict keys, so
/// <c>state_dict()</c> matches the released checkpoints key for key (buffers included).
/// <para>
/// The constructor allocates every tensor on <c>device</c> (any device, "meta" included) without touching an RNG:
/// weights are zero (scale_mul_1H11 is ln 4) until <see cref="InitWeights"/> or a checkpoint fills them.
/// </para>
/// </summary>
public sealed class VarModel : nn.Module
{
    // ---- state-dict fields (names are the checkpoint contract) ----------------------------------------------------
    private readonly Parameter pos_start;            // (1, first_l, C)
    private readonly Parameter pos_1LC;              // (1, L, C)
    private readonly Tensor lvl_1L;                  // (1, L) int64 buffer: scale index of every token
    private readonly Tensor attn_bias_for_masking;   // (1, 1, L, L) buffer: 0 where key scale ≤ query scale, else −inf
    private readonly Linear word_embed;              // Cvae → C
    private readonly EmbeddingTable class_emb;       // (num_classes + 1, C); row num_classes is the null class
    private readonly EmbeddingTable lvl_embed;       // (S, C)
    private readonly Sequential? shared_ada_lin;     // SiLU → Linear(D, 6C), only with shared_aln
    private readonly ModuleList<AdaLnSelfAttention> blocks;
    private readonly AdaLnBeforeHead head_nm;
    private readonly Linear head;                    // C → V

    public VarModel(VarConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32) : base(nameof(VarModel))
    {
        Config = config.Validate();
        device ??= CPU;
        long C = config.EmbedDim, D = config.EmbedDim, L = config.L;

        word_embed = Layers.Linear(config.Cvae, C, bias: true, device, dtype);
        class_emb = new EmbeddingTable(config.NumClasses + 1, C, device, dtype);
        pos_start = new Parameter(zeros(new long[] { 1, config.FirstL, C }, dtype: dtype, device: device));
        pos_1LC = new Parameter(zeros(new long[] { 1, L, C }, dtype: dtype, device: device));
        lvl_embed = new EmbeddingTable(config.NumScales, C, device, dtype);

        if (config.SharedAln) shared_ada_lin = Layers.SiLULinear(D, 6 * C, device, dtype);

        var dpr = config.DropPathPerBlock;
        var list = new AdaLnSelfAttention[config.Depth];
        for (int i = 0; i < config.Depth; i++)
        {
            list[i] = new AdaLnSelfAttention(i, C, D, config.SharedAln, config.NumHeads, config.FfnHidden, config.NormEps,
                config.DropRate, config.AttnDropRate, dpr[i], config.AttnL2Norm, device, dtype);
        }
        blocks = new ModuleList<AdaLnSelfAttention>(list);

        // Scale index of each token; the mask lets a token see every token of its own and earlier scales.
        var lvls = new long[L];
        foreach (var (si, (bg, ed)) in config.BeginEnds.Select((be, si) => (si, be)))
            for (int t = bg; t < ed; t++) lvls[t] = si;
        using (var lvlCpu = tensor(lvls, dtype: ScalarType.Int64))
            lvl_1L = lvlCpu.to(device).reshape(1, L);
        using (var d_L1 = lvl_1L.reshape(L, 1))
        using (var dT_1L = lvl_1L.reshape(1, L))
        using (var future_LL = d_L1.lt(dT_1L))
            attn_bias_for_masking = zeros(new long[] { L, L }, dtype: dtype, device: device)
                .masked_fill_(future_LL, double.NegativeInfinity).reshape(1, 1, L, L);

        head_nm = new AdaLnBeforeHead(C, D, config.NormEps, device, dtype);
        head = Layers.Linear(C, config.VocabSize, bias: true, device, dtype);

        RegisterComponents();
    }

    public VarConfig Config { get; }

    public Device Device => pos_1LC.device;

    public ScalarType DType => pos_1LC.dtype;

    public IReadOnlyList<AdaLnSelfAttention> Blocks => [.. blocks];

    // ---- teacher forcing ------------------------------------------------------------------------------------------

    /// <summary>
    /// Teacher-forcing forward (VAR.forward): logits (B, L, V) in float32 for every token given the class labels (B,)
    /// int64 and the inputs of scales 1..S−1, <paramref name="xWoFirstL"/> (B, L − first_l, Cvae).
    /// In training mode, label dropout (cond_drop_rate → label = num_classes), stochastic depth and dropout draw from
    /// <paramref name="generator"/> (required then); in eval mode nothing is drawn.
    /// <para>
    /// Progressive training (the reference's prog_si): inputs of scales 1..k only, (B, end_k − first_l, Cvae), give the
    /// logits of scales 0..k, (B, end_k, V) — by the block-causal mask, the same values as the first end_k positions of
    /// the whole sequence's forward.
    /// </para>
    /// </summary>
    public Tensor Forward(Tensor labels, Tensor xWoFirstL, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var cfg = Config;
        long B = xWoFirstL.shape.Length == 3 ? xWoFirstL.shape[0] : -1;
        CheckLabels(labels, B < 0 ? labels.shape[0] : B);
        long ed = xWoFirstL.dim() == 3 ? cfg.FirstL + xWoFirstL.shape[1] : -1;
        if (xWoFirstL.dim() != 3 || xWoFirstL.shape[2] != cfg.Cvae || !cfg.BeginEnds.Any(be => be.End == ed))
            throw new VarSharpException(
                $"teacher-forcing input must have shape ({B}, {cfg.L - cfg.FirstL}, {cfg.Cvae}) (or a prefix of whole scales), found ({string.Join(", ", xWoFirstL.shape)}).");
        long C = cfg.EmbedDim;

        var label_B = labels;
        if (training && cfg.CondDropRate > 0)
        {
            var gen = RequireGenerator(generator, "cond_drop_rate");
            var drop_B = rand(new long[] { B }, dtype: ScalarType.Float32, device: labels.device, generator: gen).lt(cfg.CondDropRate);
            label_B = labels.masked_fill(drop_B, cfg.NumClasses);
        }

        var cond_BD = class_emb.forward(label_B);
        var sos_BlC = cond_BD.unsqueeze(1).expand(B, cfg.FirstL, C).add(pos_start.expand(B, cfg.FirstL, C));
        var x_BLC = cat([sos_BlC, word_embed.forward(xWoFirstL.to(DType))], 1);
        // Views of the first ed positions (all of them without progressive training).
        var upTo = TensorIndex.Slice(0, ed);
        x_BLC = x_BLC.add(lvl_embed.forward(lvl_1L[TensorIndex.Colon, upTo].expand(B, -1)).add(pos_1LC[TensorIndex.Colon, upTo]));
        var mask = attn_bias_for_masking[TensorIndex.Colon, TensorIndex.Colon, upTo, upTo];

        var condBD_or_gss = shared_ada_lin is null ? cond_BD : shared_ada_lin.forward(cond_BD).view(-1, 1, 6, C);
        foreach (var b in blocks) x_BLC = b.Forward(x_BLC, condBD_or_gss, mask, generator);

        // With the first scale alone, word_embed still runs on the empty input: its gradients are zeros rather than
        // absent, so AdamW still steps and decays it, as the reference gets by adding it times zero.
        return Logits(x_BLC, cond_BD).MoveToOuterDisposeScope();
    }

    // ---- one scale with a KV cache --------------------------------------------------------------------------------

    /// <summary>A KV cache for <paramref name="batchSize"/> rows (2·B when guidance doubles the batch).</summary>
    public KvCache NewKvCache(long batchSize) =>
        new(Config.Depth, batchSize, Config.NumHeads, Config.L, Config.HeadDim, DType, Device);

    /// <summary>
    /// Logits (B, pn², V) of scale <paramref name="scaleIndex"/>, attending over this scale and every cached earlier
    /// scale (no mask), and appending this scale's keys/values to <paramref name="cache"/>. Scale 0's tokens come
    /// from the class embedding (<paramref name="scaleInput"/> must be null); scale k &gt; 0 reads its input
    /// (B, pn_k², Cvae) — the area-downsampled f_hat, as in teacher forcing. Runs without gradient and without any
    /// randomness (no label dropout, no drop_path). Scales must be fed in order 0, 1, …; <see cref="KvCache.Reset"/>
    /// starts over.
    /// </summary>
    public Tensor StepLogits(int scaleIndex, Tensor labels, Tensor? scaleInput, KvCache cache)
    {
        var cfg = Config;
        if (scaleIndex < 0 || scaleIndex >= cfg.NumScales)
            throw new VarSharpException($"scale index must be in [0, {cfg.NumScales - 1}], found {scaleIndex}.");
        if (scaleIndex != cache.NextScale)
            throw new VarSharpException($"the KV cache expects scale {cache.NextScale} next, but scale {scaleIndex} was given.");
        if (cache.Depth != cfg.Depth || cache.Capacity != cfg.L)
            throw new VarSharpException($"the KV cache was made for depth {cache.Depth} and L {cache.Capacity}, the model has depth {cfg.Depth} and L {cfg.L}.");
        long B = cache.BatchSize;
        CheckLabels(labels, B);
        var (bg, ed) = cfg.BeginEnds[scaleIndex];
        int l = ed - bg;
        if (scaleIndex == 0 && scaleInput is not null)
            throw new VarSharpException("scale 0 is built from the class embedding; pass no scale input for it.");
        if (scaleIndex > 0 && (scaleInput is null || scaleInput.dim() != 3 || scaleInput.shape[0] != B
                               || scaleInput.shape[1] != l || scaleInput.shape[2] != cfg.Cvae))
            throw new VarSharpException(
                $"scale {scaleIndex} input must have shape ({B}, {l}, {cfg.Cvae}), found " +
                (scaleInput is null ? "none." : $"({string.Join(", ", scaleInput.shape)})."));

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long C = cfg.EmbedDim;
        var cond_BD = class_emb.forward(labels);
        var lvlPos_1lC = lvl_embed.forward(lvl_1L.narrow(1, bg, l)).add(pos_1LC.narrow(1, bg, l));
        var x_BlC = scaleIndex == 0
            ? cond_BD.unsqueeze(1).expand(B, l, C).add(pos_start.expand(B, l, C)).add(lvlPos_1lC)
            : word_embed.forward(scaleInput!.to(DType)).add(lvlPos_1lC);

        var condBD_or_gss = shared_ada_lin is null ? cond_BD : shared_ada_lin.forward(cond_BD).view(-1, 1, 6, C);
        for (int i = 0; i < blocks.Count; i++) x_BlC = blocks[i].ForwardCached(x_BlC, condBD_or_gss, cache, i);
        cache.Advance(l);

        return Logits(x_BlC, cond_BD).MoveToOuterDisposeScope();
    }

    // The reference's get_logits (head(head_nm(h.float(), cond).float()).float()), in the model's own type, so that a
    // bfloat16/float16 model runs its head in that type too; the logits always come back as float32.
    private Tensor Logits(Tensor h_BLC, Tensor cond_BD) =>
        head.forward(head_nm.Forward(h_BLC.to(DType), cond_BD).to(DType)).to(ScalarType.Float32);

    private void CheckLabels(Tensor labels, long batch)
    {
        if (labels.dtype != ScalarType.Int64 || labels.dim() != 1 || labels.shape[0] != batch)
            throw new VarSharpException(
                $"labels must be an int64 vector of length {batch}, found {labels.dtype} of shape ({string.Join(", ", labels.shape)}).");
        if (labels.device_type == DeviceType.META || batch == 0) return;
        using var minT = labels.min();
        using var maxT = labels.max();
        long min = minT.item<long>(), max = maxT.item<long>();
        if (min < 0 || max > Config.NumClasses)
            throw new VarSharpException(
                $"class labels must be in [0, {Config.NumClasses}] ({Config.NumClasses} is the unconditional class), found values in [{min}, {max}].");
    }

    internal static Generator RequireGenerator(Generator? generator, string what) =>
        generator ?? throw new VarSharpException($"a training forward with {what} > 0 needs a torch.Generator; none was passed.");

    // ---- initialisation -------------------------------------------------------------------------------------------

    /// <summary>
    /// The official initialisation (VAR constructor + <c>VAR.init_weights</c>), drawing only from
    /// <paramref name="generator"/>:
    /// pos_start / pos_1LC trunc-normal with std √(1/(3C)) (the constructor's std); every Linear weight and Embedding
    /// table trunc-normal with <paramref name="initStd"/> (√(1/(3C)) when negative) and zero biases; head.weight
    /// ×initHead; head_nm's ada_lin weight ×initAdaln; per block proj and fc2 weights ÷√(2·depth), ada_lin rows
    /// [2C:] ×initAdaln and [:2C] (gammas) ×initAdalnGamma, or with shared AdaLN ada_gss = N(0,1)/√C then the same
    /// two factors on its slices; q_bias = v_bias = 0; scale_mul_1H11 = ln 4. Bounds of trunc-normal are ±2 absolute,
    /// as in torch.
    /// </summary>
    public void InitWeights(Generator generator, double initAdaln = 0.5, double initAdalnGamma = 1e-5, double initHead = 0.02, double initStd = -1)
    {
        ArgumentNullException.ThrowIfNull(generator);
        using var noGrad = no_grad();
        long C = Config.EmbedDim;
        double ctorStd = Math.Sqrt(1.0 / C / 3.0);
        if (initStd < 0) initStd = ctorStd;

        Stochastic.TruncNormal_(pos_start, ctorStd, generator);
        Stochastic.TruncNormal_(pos_1LC, ctorStd, generator);

        foreach (var m in modules())
        {
            switch (m)
            {
                case Linear lin:
                    Stochastic.TruncNormal_(lin.weight!, initStd, generator);
                    lin.bias?.zero_();
                    break;
                case EmbeddingTable emb:
                    Stochastic.TruncNormal_(emb.Weight, initStd, generator);
                    break;
            }
        }

        if (initHead >= 0)
        {
            head.weight!.mul_(initHead);
            head.bias!.zero_();
        }
        var headAda = head_nm.AdaLinear;
        headAda.weight!.mul_(initAdaln);
        headAda.bias!.zero_();

        double div = Math.Sqrt(2.0 * Config.Depth);
        foreach (var b in blocks)
        {
            b.Attn.Proj.weight!.div_(div);
            b.FeedForward.Fc2.weight!.div_(div);
            b.Attn.QBias.zero_();
            b.Attn.VBias.zero_();
            b.Attn.ScaleMul?.fill_(Math.Log(4.0));
            if (b.AdaLinear is { } ada)
            {
                using (var adaln = ada.weight!.narrow(0, 2 * C, 4 * C)) adaln.mul_(initAdaln);
                using (var gamma = ada.weight!.narrow(0, 0, 2 * C)) gamma.mul_(initAdalnGamma);
                ada.bias?.zero_();
            }
            else if (b.AdaGss is { } gss)
            {
                Stochastic.Normal_(gss, 1.0 / Math.Sqrt(C), generator);
                using (var adaln = gss.narrow(2, 2, 4)) adaln.mul_(initAdaln);
                using (var gamma = gss.narrow(2, 0, 2)) gamma.mul_(initAdalnGamma);
            }
        }
    }
}
