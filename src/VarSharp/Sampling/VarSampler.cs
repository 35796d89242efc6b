using VarSharp.Checkpoints;
using VarSharp.Tokenizer;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Sampling;

/// <summary>What one sampling run produced. Owns its tensors; dispose it.</summary>
public sealed class SampleResult : IDisposable
{
    internal SampleResult(long[] labels, Tensor images, List<Tensor> tokens, Tensor fHat, Tensor? logitsCfg, Tensor? logitsRaw, Tensor? scaleImages)
    {
        Labels = labels;
        Images = images;
        Tokens = tokens;
        Fhat = fHat;
        LogitsCfg = logitsCfg;
        LogitsRaw = logitsRaw;
        ScaleImages = scaleImages;
    }

    /// <summary>The class of every row (given or drawn).</summary>
    public IReadOnlyList<long> Labels { get; }

    /// <summary>The images (B, 3, H, W) in [0, 1], as <c>autoregressive_infer_cfg</c> returns them.</summary>
    public Tensor Images { get; }

    /// <summary>The chosen tokens of every scale, (B, pn²) int64 each.</summary>
    public IReadOnlyList<Tensor> Tokens { get; }

    /// <summary>f_hat after the last scale (B, Cvae, h, w).</summary>
    public Tensor Fhat { get; }

    /// <summary>With <see cref="SampleExtras.Logits"/>: logits after guidance, before filtering, (B, L, V).</summary>
    public Tensor? LogitsCfg { get; }

    /// <summary>With <see cref="SampleExtras.Logits"/>: the transformer's logits, rows [:B] conditional, [B:] unconditional, (2B, L, V).</summary>
    public Tensor? LogitsRaw { get; }

    /// <summary>With <see cref="SampleExtras.ScaleImages"/>: the image after every scale, (S, B, 3, H, W) in [0, 1].</summary>
    public Tensor? ScaleImages { get; }

    /// <summary>All tokens concatenated over scales, (B, L).</summary>
    public Tensor TokensBL() => cat(Tokens.ToArray(), 1);

    public void Dispose()
    {
        Images.Dispose();
        foreach (var t in Tokens) t.Dispose();
        Fhat.Dispose();
        LogitsCfg?.Dispose();
        LogitsRaw?.Dispose();
        ScaleImages?.Dispose();
    }
}

/// <summary>
/// The VAR sampling loop (<c>VAR.autoregressive_infer_cfg</c>), separate from the model: one
/// <see cref="VarModel.StepLogits"/> per scale with a KV cache over a doubled batch (rows [:B] the class labels, rows
/// [B:] the null class), guidance t = cfg·si/(S−1) mixing (1+t)·cond − t·uncond, top-k/top-p filtering, a multinomial
/// draw, and the tokenizer turning the chosen tokens into f_hat and the next scale's input. The same tokens feed both
/// halves of the batch. The image is the decoded final f_hat mapped to [0, 1].
/// </summary>
public sealed class VarSampler
{
    public VarSampler(VarModel model, VqVae tokenizer)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ModelFolder.CheckCompatible(model.Config, tokenizer.Config);
        Model = model;
        Tokenizer = tokenizer;
    }

    public VarModel Model { get; }
    public VqVae Tokenizer { get; }

    /// <summary>
    /// True (default): one <see cref="VarModel.StepLogits"/> per scale over a KV cache. False: no cache — every scale
    /// runs a full teacher-forcing forward over all L positions (inputs known so far, zeros after them; the
    /// block-causal mask keeps the scale's logits exact), as a sampler without a cache would. Only for benchmarks and
    /// checks (<see cref="SamplingBenchmark"/>): it costs S full passes instead of one pass in pieces.
    /// </summary>
    public bool UseKvCache { get; init; } = true;

    /// <summary>
    /// Samples one image per entry of <paramref name="labels"/> (class ids in [0, num_classes)).
    /// <paramref name="scaleImage"/>, when given, is called after every scale with the scale index and the image decoded
    /// from f_hat so far, (B, C, H, W) in [0, 1]; the tensor is valid only during the call (copy what you keep). A cancelled
    /// <paramref name="cancellationToken"/> stops the run between scales with an <see cref="OperationCanceledException"/>.
    /// </summary>
    public SampleResult Sample(IReadOnlyList<int> labels, SamplerSettings settings, SampleRng rng,
        SampleExtras extras = SampleExtras.None, IProgress<int>? scaleDone = null,
        Action<int, Tensor>? scaleImage = null, CancellationToken cancellationToken = default, TokenConstraint? constraint = null)
    {
        ArgumentNullException.ThrowIfNull(labels);
        CheckCount(labels.Count);
        int nc = Model.Config.NumClasses;
        foreach (var c in labels)
            if (c < 0 || c > nc)
                throw new VarSharpException($"class id {c} is unknown: this model has classes 0 to {nc - 1}, and {nc} samples unconditionally.");
        return Run(labels.Count, labels, settings, rng, extras, scaleDone, scaleImage, cancellationToken, constraint);
    }

    /// <summary>
    /// Samples <paramref name="count"/> images of classes drawn uniformly from the generator(s) first, as the reference
    /// does when it is given no labels. <paramref name="scaleImage"/> and <paramref name="cancellationToken"/> as in
    /// <see cref="Sample"/>.
    /// </summary>
    public SampleResult SampleRandomClasses(int count, SamplerSettings settings, SampleRng rng,
        SampleExtras extras = SampleExtras.None, IProgress<int>? scaleDone = null,
        Action<int, Tensor>? scaleImage = null, CancellationToken cancellationToken = default, TokenConstraint? constraint = null)
    {
        CheckCount(count);
        return Run(count, null, settings, rng, extras, scaleDone, scaleImage, cancellationToken, constraint);
    }

    /// <summary>Scale <paramref name="si"/>'s logits from one full forward over the inputs fed so far (no cache).</summary>
    private Tensor RecomputeLogits(int si, Tensor label_2B, List<Tensor> fed)
    {
        var cfg = Model.Config;
        var (bg, ed) = cfg.BeginEnds[si];
        var x = zeros(new long[] { label_2B.shape[0], cfg.L - cfg.FirstL, cfg.Cvae }, dtype: ScalarType.Float32, device: Model.Device);
        if (fed.Count > 0)
        {
            var known = cat(fed.ToArray(), 1);
            x.narrow(1, 0, known.shape[1]).copy_(known);
        }
        bool wasTraining = Model.training;
        Model.eval();   // sampling draws nothing inside the model (no label dropout, no drop path), as StepLogits
        try
        {
            return Model.Forward(label_2B, x).narrow(1, bg, ed - bg);
        }
        finally
        {
            if (wasTraining) Model.train();
        }
    }

    private static void CheckCount(int count)
    {
        if (count <= 0) throw new VarSharpException($"the number of images to sample must be positive, found {count}.");
    }

    private SampleResult Run(int batch, IReadOnlyList<int>? givenLabels, SamplerSettings settings, SampleRng rng,
        SampleExtras extras, IProgress<int>? scaleDone, Action<int, Tensor>? scaleImage, CancellationToken cancellationToken,
        TokenConstraint? constraint)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(rng);
        settings.Validate(Model.Config);
        if (rng.RowSeeds is { } seeds && seeds.Count != batch)
            throw new VarSharpException($"per-sample seeding needs one seed per image: {batch} images but {seeds.Count} seeds.");

        var cfg = Model.Config;
        if (constraint is not null && (constraint.Tokens.Count != cfg.NumScales
            || constraint.Tokens.Select(t => t.shape[^1]).Where((l, si) => l != cfg.PatchNums[si] * cfg.PatchNums[si]).Any()))
            throw new VarSharpException($"the edit's token pyramid does not have this model's scales ({string.Join(",", cfg.PatchNums)}).");
        var device = Model.Device;
        long B = batch, V = cfg.VocabSize, Cvae = cfg.Cvae;
        int S = cfg.NumScales, latent = cfg.PatchNums[^1];
        bool wantLogits = extras.HasFlag(SampleExtras.Logits), wantScales = extras.HasFlag(SampleExtras.ScaleImages);

        Generator? shared = rng.SharedSeed is { } s ? SampleRng.NewGenerator(s, device) : null;
        var rows = rng.RowSeeds?.Select(seed => SampleRng.NewGenerator(seed, device)).ToArray() ?? [];
        try
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();

            // Labels: given, or drawn uniformly (torch.multinomial over uniform probabilities, as the reference does).
            Tensor label_B;
            if (givenLabels is not null)
            {
                label_B = tensor(givenLabels.Select(c => (long)c).ToArray(), dtype: ScalarType.Int64, device: device);
            }
            else
            {
                var uniform_1N = full(new long[] { 1, cfg.NumClasses }, 1.0 / cfg.NumClasses, dtype: ScalarType.Float32, device: device);
                label_B = shared is not null
                    ? multinomial(uniform_1N, B, replacement: true, generator: shared).reshape(B)
                    : cat(rows.Select(g => multinomial(uniform_1N, 1, replacement: true, generator: g).reshape(1)).ToArray(), 0);
            }
            var label_2B = cat([label_B, full_like(label_B, cfg.NumClasses)], 0);

            using var cache = UseKvCache ? Model.NewKvCache(2 * B) : null;
            var fedInputs = new List<Tensor>(S);
            var fHat_BChw = zeros(new long[] { B, Cvae, latent, latent }, dtype: ScalarType.Float32, device: device);
            var codebook_VC = Tokenizer.Quantizer.Codebook.weight!;
            var tokens = new List<Tensor>(S);
            var logitsCfg = new List<Tensor>();
            var logitsRaw = new List<Tensor>();
            var scaleImages = new List<Tensor>();
            Tensor? nextInput_2BlC = null;

            for (int si = 0; si < S; si++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var stepScope = NewDisposeScope();
                int pn = cfg.PatchNums[si];
                double ratio = S > 1 ? (double)si / (S - 1) : 0.0;
                Tensor raw_2BlV;
                if (cache is not null)
                {
                    raw_2BlV = Model.StepLogits(si, label_2B, nextInput_2BlC, cache);
                    nextInput_2BlC?.Dispose();
                }
                else
                {
                    if (nextInput_2BlC is not null) fedInputs.Add(nextInput_2BlC);   // freed with the run's scope
                    raw_2BlV = RecomputeLogits(si, label_2B, fedInputs);
                }
                nextInput_2BlC = null;

                double t = settings.Cfg * ratio;
                var logits_BlV = raw_2BlV.narrow(0, 0, B).mul(1 + t).sub(raw_2BlV.narrow(0, B, B).mul(t));
                if (wantLogits)
                {
                    logitsRaw.Add(raw_2BlV.MoveToOuterDisposeScope());
                    logitsCfg.Add(logits_BlV.clone().MoveToOuterDisposeScope());
                }

                LogitFilters.TopKTopP_(logits_BlV, settings.TopK, settings.TopP);
                var idx_Bl = shared is not null ? TokenSampling.Multinomial(logits_BlV, shared) : TokenSampling.Multinomial(logits_BlV, rows);
                // Editing: where the image is known, its own token replaces the draw (the draw still happens, so the
                // generators advance exactly as without an edit).
                Tensor? known_Bl = constraint?.Known[si].expand(B, -1);
                if (known_Bl is not null) idx_Bl = where(known_Bl, constraint!.Tokens[si].expand(B, -1), idx_Bl);
                tokens.Add(idx_Bl.MoveToOuterDisposeScope());

                Tensor h_BlC;
                if (!settings.MoreSmooth)
                {
                    h_BlC = Tokenizer.Quantizer.Codebook.call(idx_Bl);
                }
                else
                {
                    // Gumbel-softmax over the filtered logits, sharpened as the scales advance (tau schedule of the reference).
                    double tau = Math.Max(0.27 * (1 - ratio * 0.95), 0.005);
                    var scaled = logits_BlV.mul(1 + ratio);
                    var soft_BlV = shared is not null ? TokenSampling.GumbelSoftmax(scaled, tau, shared) : TokenSampling.GumbelSoftmax(scaled, tau, rows);
                    h_BlC = soft_BlV.matmul(codebook_VC.unsqueeze(0));
                    if (known_Bl is not null) h_BlC = where(known_Bl.unsqueeze(-1), Tokenizer.Quantizer.Codebook.call(idx_Bl), h_BlC);
                }
                var h_BChw = h_BlC.transpose(1, 2).reshape(B, Cvae, pn, pn);
                var next = Tokenizer.Quantizer.NextAutoregressiveInput(si, fHat_BChw, h_BChw);
                if (wantScales || scaleImage is not null)
                {
                    var image_BCHW = Tokenizer.FhatToImage(fHat_BChw).add_(1).mul_(0.5);
                    scaleImage?.Invoke(si, image_BCHW);
                    if (wantScales) scaleImages.Add(image_BCHW.MoveToOuterDisposeScope());
                }
                if (si != S - 1)
                {
                    var next_BlC = next.view(B, Cvae, -1).transpose(1, 2);
                    nextInput_2BlC = next_BlC.repeat(2, 1, 1).MoveToOuterDisposeScope();
                }
                scaleDone?.Report(si + 1);
            }

            var images = Tokenizer.FhatToImage(fHat_BChw).add_(1).mul_(0.5);
            var labelsOut = label_B.cpu().data<long>().ToArray();
            return new SampleResult(
                labelsOut,
                images.MoveToOuterDisposeScope(),
                tokens.Select(x => x.MoveToOuterDisposeScope()).ToList(),
                fHat_BChw.MoveToOuterDisposeScope(),
                wantLogits ? cat(logitsCfg.ToArray(), 1).MoveToOuterDisposeScope() : null,
                wantLogits ? cat(logitsRaw.ToArray(), 1).MoveToOuterDisposeScope() : null,
                wantScales ? stack(scaleImages.ToArray(), 0).MoveToOuterDisposeScope() : null);
        }
        finally
        {
            shared?.Dispose();
            foreach (var g in rows) g.Dispose();
        }
    }
}
