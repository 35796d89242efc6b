using System.Text.Json;
using System.Text.Json.Serialization;

namespace VarSharp.Config;

/// <summary>
/// Every setting of a transformer training run (the `train_var` block of a checkpoint's config.json), defaults after
/// the reference trainer (train.py, utils/arg_util.py) scaled to small CPU runs. Together with the `var` block and the
/// tokenizer's weights it determines the run: same blocks + same seed + same thread count → the same weights, bit for
/// bit. Fields in <see cref="ChangeableOnResume"/> only affect reporting (and `steps` the schedule's
/// length; `grad_accum` the memory a step needs and the order in which gradients are summed, so a resumed run equals an
/// uninterrupted one bit for bit only when it keeps the value).
/// </summary>
public sealed record VarTrainConfig
{
    /// <summary>The tokenizer model folder the run started from (for the record; a resume uses the checkpoint's own copy).</summary>
    public string Tokenizer { get; init; } = "";

    /// <summary>A folder of Fashion-MNIST idx files or an ImageNet-layout image folder.</summary>
    public string Data { get; init; } = "/usr/share/datasets/fashion-mnist";

    public int Steps { get; init; } = 20000;
    public int BatchSize { get; init; } = 64;

    /// <summary>
    /// Gradient accumulation (the reference's ac): each batch of <see cref="BatchSize"/> images runs forward and backward
    /// in this many slices before one optimizer step, for the same lr and, up to float summation order, the same update
    /// with a fraction of the activation memory.
    /// </summary>
    public int GradAccum { get; init; } = 1;

    /// <summary>
    /// "f32" (the reference's default) or "bf16": mixed precision, forward and backward in bfloat16 against float32
    /// master weights, gradients, clipping and AdamW state (the reference's AMP with bf16, without autocast's per-op
    /// choices). Checkpoints hold the float32 masters, so the value may change on resume (bit-identical continuation
    /// only with the same value).
    /// </summary>
    public string Precision { get; init; } = "f32";
    public ulong Seed { get; init; }

    /// <summary>
    /// Base learning rate per 256 images (the reference's tblr); the peak lr is tblr · batch / 256. 1e-2 (lr 2.5e-3 at
    /// batch 64) is measured for small models on Fashion-MNIST (docs/training.md); the reference's 1e-4 is for
    /// 16–30-block models on ImageNet with 768-image batches.
    /// </summary>
    public double Tblr { get; init; } = 1e-2;

    /// <summary>Linear warmup steps; null (the default) takes the reference's 2% of the steps (wp = ep/50), fixed when a run starts.</summary>
    public int? WarmupSteps { get; init; }
    /// <summary>Warmup starts at this fraction of the peak (wp0).</summary>
    public double WarmupStartRatio { get; init; } = 0.005;
    /// <summary>Decay shape to <see cref="MinLrRatio"/>·lr at the last step: "lin0" (the reference's default sche) or another name of <see cref="Training.LrSchedule"/>.</summary>
    public string Decay { get; init; } = "lin0";
    /// <summary>Final lr / peak lr (wpe).</summary>
    public double MinLrRatio { get; init; } = 0.01;

    /// <summary>
    /// Progressive training (the reference's pg; 0, the default, turns it off): the fraction of the steps after which
    /// every scale is trained; before, the sequence stops at a scale that grows from <see cref="ProgressiveStart"/>
    /// (<see cref="Training.ProgressiveSchedule"/>). The reference pairs it with the decay "lin" + pg, which the CLI
    /// picks when --decay is not given.
    /// </summary>
    public double Progressive { get; init; }
    /// <summary>The scale index the progressive sequence stops at during warmup (pg0, 4 as in the reference).</summary>
    public int ProgressiveStart { get; init; } = 4;
    /// <summary>Steps over which a newly added scale's loss weight ramps up (pgwp); null takes the reference's steps/300.</summary>
    public double? ProgressiveWarmupSteps { get; init; }
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    /// <summary>Decoupled weight decay on the reference's decay group (twd; constant, as twde defaults to twd).</summary>
    public double WeightDecay { get; init; } = 0.05;
    /// <summary>Clip the global gradient norm to this (tclip; 0: off).</summary>
    public double GradClip { get; init; } = 2.0;
    /// <summary>Label smoothing of the training loss (ls).</summary>
    public double LabelSmooth { get; init; }

    /// <summary>Initialisation multipliers of build_vae_var (aln, alng, hd, ini; ini −1: √(1/(3C))).</summary>
    public double InitAdaln { get; init; } = 0.5;
    public double InitAdalnGamma { get; init; } = 1e-5;
    public double InitHead { get; init; } = 0.02;
    public double InitStd { get; init; } = -1;

    /// <summary>A model folder whose `var.*` weights the run starts from instead of a fresh initialisation (fine-tuning); null: none.</summary>
    public string? InitFrom { get; init; }
    /// <summary>SHA-256 of <see cref="InitFrom"/>'s weights file, recorded when the run starts.</summary>
    public string? InitFromSha256 { get; init; }
    /// <summary>With <see cref="InitFrom"/>: keep a fresh class embedding (for data with other classes than the initial model's).</summary>
    public bool InitResetClasses { get; init; }

    public bool Resize { get; init; } = true;
    public bool Hflip { get; init; }
    public bool Strict { get; init; }

    public int LogEvery { get; init; } = 20;
    /// <summary>Held-out teacher-forcing metrics every this many steps (0: only at the end).</summary>
    public int EvalEvery { get; init; } = 1000;
    /// <summary>The first this many held-out images are evaluated (0: no evaluation).</summary>
    public int EvalImages { get; init; } = 1000;
    /// <summary>A sample grid every this many steps (0: only at the end).</summary>
    public int SampleEvery { get; init; } = 1000;
    /// <summary>Classes in the sample grid (each sampled twice); 0: no grids. The first classes of the data are used.</summary>
    public int SampleClasses { get; init; } = 10;
    /// <summary>Guidance scale of the sample grids.</summary>
    public double SampleCfg { get; init; } = 3.0;
    /// <summary>Seed of the sample grids (image i uses seed + i), the same at every step so grids can be compared.</summary>
    public long SampleSeed { get; init; }
    public int CheckpointEvery { get; init; } = 2000;
    public int KeepCheckpoints { get; init; } = 3;
    public int Prefetch { get; init; } = 2;

    /// <summary>Folder for the token-pyramid cache file (null: the run folder); files are keyed by tokenizer and data, so folders can be shared.</summary>
    public string? TokenCache { get; init; }

    /// <summary>Peak learning rate: tblr · batch / 256 (the reference's tlr).</summary>
    [JsonIgnore] public double Lr => Tblr * BatchSize / 256;

    /// <summary>The warmup actually used: <see cref="WarmupSteps"/>, or 2% of the steps (at least 1) when it is null.</summary>
    [JsonIgnore] public int ResolvedWarmupSteps => WarmupSteps ?? Math.Max(1, (int)Math.Round(Steps / 50.0, MidpointRounding.ToEven));

    /// <summary>The stage warmup actually used: <see cref="ProgressiveWarmupSteps"/>, or steps/300 when it is null.</summary>
    [JsonIgnore] public double ResolvedProgressiveWarmupSteps => ProgressiveWarmupSteps ?? Training.ProgressiveSchedule.DefaultStageWarmup(Steps);

    /// <summary>Settings that may differ between a checkpoint and the run resuming it.</summary>
    public static IReadOnlySet<string> ChangeableOnResume { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "grad_accum", "precision",
        "tokenizer", "steps", "log_every", "eval_every", "eval_images", "sample_every", "sample_classes", "sample_cfg", "sample_seed",
        "checkpoint_every", "keep_checkpoints", "prefetch", "strict", "token_cache",
    };

    public VarTrainConfig Validate()
    {
        Require(Steps >= 1, $"steps must be positive but is {Steps}");
        Require(BatchSize >= 1, $"batch_size must be positive but is {BatchSize}");
        Require(GradAccum >= 1 && GradAccum <= BatchSize, $"grad_accum must lie in [1, batch_size = {BatchSize}] but is {GradAccum}");
        Require(Precision is "f32" or "bf16", $"precision must be 'f32' or 'bf16' but is '{Precision}'");
        Require(Tblr > 0 && double.IsFinite(Tblr), $"tblr must be positive but is {Tblr}");
        Require(WarmupSteps is null or >= 0, $"warmup_steps must be 0 or more but is {WarmupSteps}");
        Require(WarmupStartRatio is >= 0 and <= 1, $"warmup_start_ratio must lie in [0, 1] but is {WarmupStartRatio}");
        Require(Training.LrSchedule.IsKnown(Decay), $"decay must be {Training.LrSchedule.KnownText} but is '{Decay}'");
        Require(MinLrRatio is >= 0 and <= 1, $"min_lr_ratio must lie in [0, 1] but is {MinLrRatio}");
        // exp decays geometrically towards the floor, which cannot be 0 (the reference fails on log(0) there too).
        Require(Decay != "exp" || MinLrRatio > 0, "min_lr_ratio must be above 0 for the exp decay, which falls geometrically to it");
        Require(Progressive is >= 0 and <= 1, $"progressive must lie in [0, 1] (0 = off) but is {Progressive}");
        Require(ProgressiveStart >= 0, $"progressive_start must be a scale index, 0 or more, but is {ProgressiveStart}");
        Require(ProgressiveWarmupSteps is null || (ProgressiveWarmupSteps > 0 && double.IsFinite(ProgressiveWarmupSteps.Value)),
            $"progressive_warmup_steps must be positive but is {ProgressiveWarmupSteps}");
        Require(Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1, $"betas must lie in [0, 1) but are ({Beta1}, {Beta2})");
        Require(Eps > 0, $"eps must be positive but is {Eps}");
        Require(WeightDecay >= 0, $"weight_decay must be 0 or more but is {WeightDecay}");
        Require(GradClip >= 0, $"grad_clip must be 0 (off) or positive but is {GradClip}");
        Require(LabelSmooth is >= 0 and < 1, $"label_smooth must lie in [0, 1) but is {LabelSmooth}");
        Require(InitAdaln >= 0 && InitAdalnGamma >= 0, $"init_adaln and init_adaln_gamma must be 0 or more but are {InitAdaln} and {InitAdalnGamma}");
        Require(double.IsFinite(InitHead) && double.IsFinite(InitStd), $"init_head and init_std must be finite but are {InitHead} and {InitStd}");
        Require(!InitResetClasses || InitFrom is not null, "init_reset_classes needs init_from, the model whose other weights are kept");
        Require(LogEvery >= 1, $"log_every must be positive but is {LogEvery}");
        Require(EvalEvery >= 0, $"eval_every must be 0 (only at the end) or positive but is {EvalEvery}");
        Require(EvalImages >= 0, $"eval_images must be 0 (no evaluation) or positive but is {EvalImages}");
        Require(SampleEvery >= 0, $"sample_every must be 0 (only at the end) or positive but is {SampleEvery}");
        Require(SampleClasses >= 0, $"sample_classes must be 0 (no grids) or positive but is {SampleClasses}");
        Require(SampleCfg >= 0 && double.IsFinite(SampleCfg), $"sample_cfg must be 0 or more but is {SampleCfg}");
        Require(CheckpointEvery >= 0, $"checkpoint_every must be 0 (only at the end) or positive but is {CheckpointEvery}");
        Require(KeepCheckpoints >= 1, $"keep_checkpoints must be at least 1 but is {KeepCheckpoints}");
        Require(Prefetch >= 0, $"prefetch must be 0 or more but is {Prefetch}");
        return this;
    }

    /// <summary>The snake_case names of the settings that differ between two configs (in declaration order).</summary>
    public static List<(string Name, string Ours, string Theirs)> Differences(VarTrainConfig a, VarTrainConfig b) =>
        JsonConfig.Differences(a, b);

    public static VarTrainConfig FromJson(JsonElement element) => JsonConfig.Deserialize<VarTrainConfig>(element, "train_var").Validate();

    private static void Require(bool ok, string sentence)
    {
        if (!ok) throw new VarSharpException($"Invalid transformer training config: {sentence}.");
    }
}
