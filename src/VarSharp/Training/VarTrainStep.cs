using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>
/// Optimiser settings of the official VAR trainer (<c>train.py</c> + <c>VARTrainer.train_step</c>): AdamW with betas
/// (0.9, 0.95), weight decay on the decay group only, total-norm gradient clipping.
/// </summary>
public sealed record VarTrainSettings
{
    public double Lr { get; init; } = 1e-4;
    public double WeightDecay { get; init; } = 0.05;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;

    /// <summary>Max total gradient norm (clip_grad_norm_); ≤ 0 turns clipping off (the norm is still measured).</summary>
    public double GradClip { get; init; } = 2.0;

    public double LabelSmooth { get; init; }

    /// <summary>
    /// The number type of the forward and backward passes: float32 (the reference's default), or bfloat16 for mixed
    /// precision — the model computes in bfloat16 while float32 master weights take the (float32) gradients, the
    /// clipping and the AdamW update, and are rounded into the model after every step.
    /// </summary>
    public ScalarType ComputeDType { get; init; } = ScalarType.Float32;

    /// <summary>Reads a snake_case block such as the golden config's <c>train</c> (lr, weight_decay, betas, eps, grad_clip, label_smooth).</summary>
    public static VarTrainSettings FromJson(JsonElement block)
    {
        if (block.ValueKind != JsonValueKind.Object) throw new VarSharpException("the train block must be a JSON object.");
        var s = new VarTrainSettings();
        double Get(string name, double fallback) => block.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.Number ? e.GetDouble() : fallback;
        double b1 = s.Beta1, b2 = s.Beta2;
        if (block.TryGetProperty("betas", out var betas) && betas.ValueKind == JsonValueKind.Array && betas.GetArrayLength() == 2)
        {
            b1 = betas[0].GetDouble();
            b2 = betas[1].GetDouble();
        }
        return new VarTrainSettings
        {
            Lr = Get("lr", s.Lr),
            WeightDecay = Get("weight_decay", s.WeightDecay),
            Beta1 = b1,
            Beta2 = b2,
            Eps = Get("eps", s.Eps),
            GradClip = Get("grad_clip", s.GradClip),
            LabelSmooth = Get("label_smooth", s.LabelSmooth),
        };
    }
}

/// <summary>
/// The reference's token metrics on one batch (VARTrainer's Lm, Lt, Accm, Acct): cross-entropy without label smoothing
/// and argmax accuracy in percent, over all L tokens and over the last scale's tokens.
/// </summary>
public readonly record struct VarTokenMetrics(double LossMean, double LossTail, double AccMean, double AccTail)
{
    /// <summary>
    /// Metrics of logits (B, L, V) against targets (B, L); the tail is the last <paramref name="lastL"/> tokens, and
    /// with <paramref name="lastL"/> 0 (a sequence cut before the last scale) the tail metrics are NaN, not computed.
    /// </summary>
    public static VarTokenMetrics Of(Tensor logits_BLV, Tensor gt_BL, long lastL)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long V = logits_BLV.shape[^1];
        var logits = logits_BLV.detach();
        var pred_BL = logits.argmax(-1);
        double lm = nn.functional.cross_entropy(logits.reshape(-1, V), gt_BL.reshape(-1)).item<float>();
        double am = pred_BL.eq(gt_BL).to(ScalarType.Float64).mean().item<double>() * 100;
        if (lastL <= 0) return new VarTokenMetrics(lm, double.NaN, am, double.NaN);
        var tail = TensorIndex.Slice(-lastL);
        var gtTail_Bl = gt_BL[TensorIndex.Colon, tail];
        double lt = nn.functional.cross_entropy(logits[TensorIndex.Colon, tail].reshape(-1, V), gtTail_Bl.reshape(-1)).item<float>();
        double at = pred_BL[TensorIndex.Colon, tail].eq(gtTail_Bl).to(ScalarType.Float64).mean().item<double>() * 100;
        return new VarTokenMetrics(lm, lt, am, at);
    }
}

/// <summary>What one <see cref="VarTrainStep.Step"/> measured. Owns its tensors.</summary>
public sealed class VarTrainStepResult : IDisposable
{
    internal VarTrainStepResult(double loss, double gradNorm, double clipCoef, Dictionary<string, double> gradNorms,
        Dictionary<string, Tensor>? gradients, Tensor? logits, VarTokenMetrics? metrics)
    {
        Loss = loss;
        GradNorm = gradNorm;
        ClipCoefficient = clipCoef;
        GradNorms = gradNorms;
        Gradients = gradients;
        Logits = logits;
        Metrics = metrics;
    }

    public double Loss { get; }

    /// <summary>Total L2 norm of all gradients before clipping.</summary>
    public double GradNorm { get; }

    /// <summary>The factor the gradients were multiplied by before the optimiser step (1 when not clipped).</summary>
    public double ClipCoefficient { get; }

    /// <summary>Per-parameter gradient L2 norms before clipping, by parameter name (empty unless measured).</summary>
    public IReadOnlyDictionary<string, double> GradNorms { get; }

    /// <summary>With keepGradients: every parameter's gradient before clipping.</summary>
    public IReadOnlyDictionary<string, Tensor>? Gradients { get; }

    /// <summary>With keepLogits: the training forward's logits (B, L, V).</summary>
    public Tensor? Logits { get; }

    /// <summary>With measureMetrics: Lm, Lt, Accm, Acct of the training forward's logits (before the update).</summary>
    public VarTokenMetrics? Metrics { get; }

    public void Dispose()
    {
        if (Gradients is not null) foreach (var g in Gradients.Values) g.Dispose();
        Logits?.Dispose();
    }
}

/// <summary>
/// One optimisation step of the official trainer on a teacher-forcing batch: training forward, loss = cross-entropy per
/// token ×1/L summed over L and averaged over B (a plain token mean), backward, total-norm clipping, AdamW. Weight decay
/// applies to the decay group of the official <c>filter_params</c>: every parameter except 1-D ones, biases and names
/// containing one of <see cref="NoWeightDecayKeys"/>. The optimiser is <see cref="AdamWOptimizer"/> (torch.optim.AdamW's
/// arithmetic), whose moments and step counts a checkpoint stores; <see cref="VarTrainer"/> trains through this class.
/// </summary>
public sealed class VarTrainStep : IDisposable
{
    /// <summary>The <c>nowd_keys</c> that <c>train.py</c> passes to <c>filter_params</c>.</summary>
    public static readonly IReadOnlyList<string> NoWeightDecayKeys =
    [
        "cls_token", "start_token", "task_token", "cfg_uncond", "pos_embed", "pos_1LC", "pos_start", "start_pos",
        "lvl_embed", "gamma", "beta", "ada_gss", "moe_bias", "scale_mul",
    ];

    private readonly VarModel _model;
    private readonly Dictionary<string, Parameter> _params;
    // Mixed precision: float32 master copies of the parameters (by name), which the optimiser updates; null otherwise.
    private readonly Dictionary<string, Parameter>? _masters;

    /// <param name="noWeightDecay">Names of the parameters without weight decay; null applies the official rule.</param>
    public VarTrainStep(VarModel model, VarTrainSettings settings, IEnumerable<string>? noWeightDecay = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(settings);
        _model = model;
        Settings = settings;
        if (settings.ComputeDType is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new VarSharpException($"Training computes in float32 or bfloat16, not {settings.ComputeDType}.");
        if (model.DType != ScalarType.Float32)
            throw new VarSharpException($"The model to train holds {model.DType} weights; give it float32 weights (mixed precision converts them itself).");
        var named = model.named_parameters().ToList();
        if (settings.ComputeDType != ScalarType.Float32)
        {
            // The masters are the exact float32 weights; the model only ever holds their rounding.
            _masters = named.ToDictionary(p => p.name, p =>
            {
                using var detached = p.parameter.detach();
                return (Parameter)new Parameter(detached.clone()).DetachFromDisposeScope();
            }, StringComparer.Ordinal);
            model.to(settings.ComputeDType);
            named = model.named_parameters().ToList();
        }
        _params = named.ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        ParameterNames = named.Select(p => p.name).ToArray();

        HashSet<string> nowd;
        if (noWeightDecay is null)
        {
            nowd = named.Where(p => IsNoWeightDecay(p.name, p.parameter)).Select(p => p.name).ToHashSet(StringComparer.Ordinal);
        }
        else
        {
            nowd = noWeightDecay.ToHashSet(StringComparer.Ordinal);
            var unknown = nowd.Where(n => !_params.ContainsKey(n)).ToList();
            if (unknown.Count > 0) throw new VarSharpException($"the no-weight-decay list names {unknown.Count} parameter(s) the model does not have, e.g. '{unknown[0]}'.");
        }
        NoDecayNames = ParameterNames.Where(nowd.Contains).ToArray();
        DecayNames = ParameterNames.Where(n => !nowd.Contains(n)).ToArray();
        Optimizer = new AdamWOptimizer(ParameterNames.Select(n => (n, Updated(n))), (name, _) => !nowd.Contains(name),
            settings.Beta1, settings.Beta2, settings.Eps, settings.WeightDecay);
    }

    /// <summary>The tensor the optimiser updates for a parameter: its float32 master, or the parameter itself.</summary>
    private Parameter Updated(string name) => _masters is null ? _params[name] : _masters[name];

    /// <summary>Whether the model computes in a reduced type with float32 master weights.</summary>
    public bool MixedPrecision => _masters is not null;

    /// <summary>
    /// The model's state in float32 (the master weights under mixed precision, buffers widened), by the model's own
    /// names: what a checkpoint stores, so that a run resumed in either precision starts from the exact weights.
    /// </summary>
    public List<KeyValuePair<string, Tensor>> FullPrecisionState()
    {
        var state = _model.state_dict();
        if (_masters is null) return state.ToList();
        return state.Select(kv => KeyValuePair.Create(kv.Key,
            _masters.TryGetValue(kv.Key, out var m) ? (Tensor)m.detach() : kv.Value.is_floating_point() ? kv.Value.to(ScalarType.Float32) : kv.Value)).ToList();
    }

    /// <summary>
    /// Sets the weights from a float32 state dict (a checkpoint's <paramref name="prefix"/>.* tensors), strictly: the
    /// masters take them exactly and the model their rounding, as after a training step.
    /// </summary>
    public void LoadFullPrecision(IReadOnlyDictionary<string, Tensor> state, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(state);
        // Checked before anything is written: the masters restore from float32 only (the model then holds their rounding).
        if (_masters is not null)
            foreach (var name in ParameterNames)
                if (state.TryGetValue(prefix + name, out var w) && w.dtype != ScalarType.Float32)
                    throw new VarSharpException($"'{prefix}{name}' is {w.dtype}; master weights are restored from float32 only.");
        // Names, shapes and the absence of extras are checked here; floats are rounded into a reduced-precision model.
        Checkpoints.ModuleWeights.LoadStrict(_model, state, prefix, castFloats: _masters is not null);
        if (_masters is null) return;
        using var noGrad = no_grad();
        foreach (var name in ParameterNames) _masters[name].copy_(state[prefix + name]);
    }

    public VarTrainSettings Settings { get; }

    /// <summary>The AdamW state (moments and step counts per parameter), for checkpoints.</summary>
    public AdamWOptimizer Optimizer { get; }

    /// <summary>Parameter names in the model's named_parameters order (the same set as the reference's, not always the same order).</summary>
    public IReadOnlyList<string> ParameterNames { get; }
    public IReadOnlyList<string> DecayNames { get; }
    public IReadOnlyList<string> NoDecayNames { get; }

    /// <summary>The official <c>filter_params</c> rule: no weight decay for 1-D parameters, biases and the <see cref="NoWeightDecayKeys"/>.</summary>
    public static bool IsNoWeightDecay(string name, Tensor parameter) =>
        parameter.dim() == 1 || name.EndsWith("bias", StringComparison.Ordinal)
        || NoWeightDecayKeys.Any(k => name.Contains(k, StringComparison.Ordinal));

    /// <summary>The training loss: per-token cross-entropy ×1/L, summed over L, averaged over B.</summary>
    public static Tensor Loss(Tensor logits_BLV, Tensor gt_BL, double labelSmooth = 0)
    {
        long B = gt_BL.shape[0], L = gt_BL.shape[1], V = logits_BLV.shape[^1];
        using var scope = NewDisposeScope();
        var ce = nn.functional.cross_entropy(logits_BLV.reshape(-1, V), gt_BL.reshape(-1), reduction: nn.Reduction.None, label_smoothing: labelSmooth);
        return ce.view(B, L).mul(1.0 / L).sum(-1).mean().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Progressive training's loss: the tokens of scales 0..k (<paramref name="gt_Bl"/> holds end_k of them) weighted
    /// 1/L each as in the whole sequence, those of scale k (from <paramref name="newestBegin"/>) by
    /// <paramref name="newestWeight"/> as well; summed over tokens, averaged over B (the reference's loss_weight).
    /// </summary>
    public static Tensor Loss(Tensor logits_BlV, Tensor gt_Bl, long fullL, long newestBegin, double newestWeight, double labelSmooth = 0)
    {
        long B = gt_Bl.shape[0], l = gt_Bl.shape[1], V = logits_BlV.shape[^1];
        using var scope = NewDisposeScope();
        var ce = nn.functional.cross_entropy(logits_BlV.reshape(-1, V), gt_Bl.reshape(-1), reduction: nn.Reduction.None, label_smoothing: labelSmooth);
        var lw_1l = ones(new long[] { 1, l }, dtype: ScalarType.Float32, device: ce.device).div_(fullL);
        lw_1l[TensorIndex.Colon, TensorIndex.Slice(newestBegin, l)].mul_(Math.Clamp(newestWeight, 0, 1));
        return ce.view(B, l).mul(lw_1l).sum(-1).mean().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One step on labels (B,), teacher-forcing input (B, L − first_l, Cvae) and targets (B, L). Puts the model in
    /// training mode; <paramref name="generator"/> feeds label dropout, dropout and drop-path when they are on.
    /// </summary>
    /// <param name="progressive">
    /// Progressive training's stage: only scales 0..k of the inputs and targets take part (the rest is cut off) and
    /// scale k's loss is weighted (<see cref="Loss(Tensor, Tensor, long, long, double, double)"/>); the tail metrics
    /// are then NaN, as the reference reports none. Null or <see cref="ProgressiveStage.Full"/>: the whole sequence.
    /// </param>
    /// <param name="lr">This step's learning rate (a schedule's value); null uses <see cref="VarTrainSettings.Lr"/>.</param>
    /// <param name="measureGradNorms">Measure every parameter's gradient norm (<see cref="VarTrainStepResult.GradNorms"/>).</param>
    /// <param name="measureMetrics">Compute <see cref="VarTrainStepResult.Metrics"/> from the logits.</param>
    /// <param name="microBatches">
    /// Gradient accumulation (the reference's <c>ac</c>): the batch runs forward and backward in this many consecutive
    /// slices, each slice's loss weighted by its share of the batch, so the summed gradients are the whole batch's
    /// (up to float summation order) while only one slice's activations are alive at a time. Slices draw their label
    /// dropout and drop-path from <paramref name="generator"/> one after the other.
    /// </param>
    public VarTrainStepResult Step(Tensor labels, Tensor xWoFirstL, Tensor gt_BL, Generator? generator = null,
        bool keepGradients = false, bool keepLogits = false, double? lr = null, bool measureGradNorms = true, bool measureMetrics = false,
        int microBatches = 1, ProgressiveStage? progressive = null)
    {
        long B = labels.shape[0];
        var stage = progressive ?? ProgressiveStage.Full;
        var (newestBegin, ed) = stage.Truncates ? _model.Config.BeginEnds[stage.LastScale] : (0, 0);
        if (microBatches < 1 || microBatches > B)
            throw new VarSharpException($"A batch of {B} cannot be split into {microBatches} micro-batches; use 1 to {B}.");
        using var scope = NewDisposeScope();
        if (stage.Truncates)
        {
            gt_BL = gt_BL[TensorIndex.Colon, TensorIndex.Slice(0, ed)];
            xWoFirstL = xWoFirstL[TensorIndex.Colon, TensorIndex.Slice(0, ed - _model.Config.FirstL)];
        }
        _model.train();
        Optimizer.ZeroGrad();
        double lossValue = 0;
        long lastL = stage.Truncates ? 0 : _model.Config.PatchNums[^1] * _model.Config.PatchNums[^1];
        // Metrics are token means, so each slice's count by its share; logits are kept only when asked for, since
        // they are the largest activation and slicing exists to bound memory.
        double lm = 0, lt = 0, am = 0, at = 0;
        var logitParts = new List<Tensor>(keepLogits ? microBatches : 0);
        for (int i = 0; i < microBatches; i++)
        {
            long from = B * i / microBatches, to = B * (i + 1) / microBatches;
            double share = (to - from) / (double)B;
            using var slice = NewDisposeScope();
            var part = microBatches == 1 ? TensorIndex.Colon : TensorIndex.Slice(from, to);
            var logits_bLV = _model.Forward(labels[part], xWoFirstL[part], generator);
            var loss = stage.Truncates
                ? Loss(logits_bLV, gt_BL[part], _model.Config.L, newestBegin, stage.NewestWeight, Settings.LabelSmooth)
                : Loss(logits_bLV, gt_BL[part], Settings.LabelSmooth);
            lossValue += loss.item<float>() * share;
            (microBatches == 1 ? loss : loss.mul(share)).backward();
            if (_masters is not null) AccumulateIntoMasters();
            if (measureMetrics)
            {
                var m = VarTokenMetrics.Of(logits_bLV, gt_BL[part], lastL);
                lm += m.LossMean * share;
                lt += m.LossTail * share;
                am += m.AccMean * share;
                at += m.AccTail * share;
            }
            if (keepLogits) logitParts.Add(logits_bLV.detach().MoveToOuterDisposeScope());
        }
        var logits_BLV = keepLogits ? (logitParts.Count == 1 ? logitParts[0] : cat(logitParts, 0)) : null;
        VarTokenMetrics? metrics = measureMetrics ? new VarTokenMetrics(lm, lt, am, at) : null;

        var norms = new Dictionary<string, double>(StringComparer.Ordinal);
        Dictionary<string, Tensor>? grads = keepGradients ? new(StringComparer.Ordinal) : null;
        if (measureGradNorms || keepGradients)
        {
            foreach (var name in ParameterNames)
            {
                var g = Updated(name).grad;
                if (measureGradNorms) norms[name] = g is null ? 0.0 : g.norm().item<float>();
                if (grads is not null && g is not null) grads[name] = g.detach().clone().MoveToOuterDisposeScope();
            }
        }

        var withGrad = ParameterNames.Select(Updated).Where(p => p.grad is not null).ToList();
        double total = Settings.GradClip > 0
            ? nn.utils.clip_grad_norm_(withGrad, Settings.GradClip)
            : measureGradNorms ? Math.Sqrt(norms.Values.Sum(v => v * v)) : TotalNorm(withGrad);
        // clip_grad_norm_ multiplies by max_norm / (total + 1e-6) when that is below 1.
        double coef = Settings.GradClip > 0 ? Math.Min(1.0, Settings.GradClip / (total + 1e-6)) : 1.0;
        Optimizer.Step(lr ?? Settings.Lr);
        if (_masters is not null) RoundMastersIntoModel();

        return new VarTrainStepResult(lossValue, total, coef, norms, grads,
            keepLogits ? logits_BLV!.MoveToOuterDisposeScope() : null, metrics);
    }

    /// <summary>Adds the model's reduced-precision gradients, widened, to the masters' and clears them (float32 accumulation across slices).</summary>
    private void AccumulateIntoMasters()
    {
        using var noGrad = no_grad();
        foreach (var name in ParameterNames)
        {
            var p = _params[name];
            using var g = p.grad;
            if (g is null) continue;
            var master = _masters![name];
            if (master.grad is null) master.grad = g.to(ScalarType.Float32);
            else master.grad.add_(g);
            p.grad = null;
        }
    }

    private void RoundMastersIntoModel()
    {
        using var noGrad = no_grad();
        foreach (var name in ParameterNames) _params[name].copy_(_masters![name]);
    }

    private static double TotalNorm(IEnumerable<Parameter> parameters)
    {
        using var scope = NewDisposeScope();
        double sum = 0;
        foreach (var p in parameters)
            if (p.grad is { } g) sum += g.square().sum().item<float>();
        return Math.Sqrt(sum);
    }

    public void Dispose()
    {
        Optimizer.Dispose();
        if (_masters is not null) foreach (var m in _masters.Values) m.Dispose();
    }
}
