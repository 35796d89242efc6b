using System.Text.Json;
using System.Text.Json.Serialization;

namespace VarSharp.Config;

/// <summary>
/// Every setting of a tokenizer training run (the `train_tokenizer` block of a checkpoint's config.json). Together
/// with the `vqvae` block it determines the run: same blocks + same seed + same thread count → the same weights, bit
/// for bit. Fields in <see cref="ChangeableOnResume"/> only affect reporting (and `steps` the schedule's
/// length; `grad_accum` the memory a step needs and the order in which gradients are summed, so a resumed run equals an
/// uninterrupted one bit for bit only when it keeps the value; with the adversarial loss on it cannot change, since the
/// adaptive weight and the discriminator's BatchNorm statistics are per slice).
/// </summary>
public sealed record TokenizerTrainConfig
{
    /// <summary>A folder of Fashion-MNIST idx files or an ImageNet-layout image folder.</summary>
    public string Data { get; init; } = "/usr/share/datasets/fashion-mnist";

    public int Steps { get; init; } = 20000;
    public int BatchSize { get; init; } = 32;

    /// <summary>
    /// Gradient accumulation: each batch runs forward and backward in this many slices before one optimizer step; the
    /// losses are weighted by each slice's share and the code hits summed, so the step equals the whole batch's up to
    /// float summation order, with a fraction of the activation memory.
    /// </summary>
    public int GradAccum { get; init; } = 1;
    public ulong Seed { get; init; }

    /// <summary>Peak learning rate of AdamW.</summary>
    public double Lr { get; init; } = 4e-4;
    /// <summary>Linear warmup from <see cref="WarmupStartRatio"/>·lr to lr over this many steps (the reference's wp0).</summary>
    public int WarmupSteps { get; init; } = 500;
    public double WarmupStartRatio { get; init; } = 0.005;
    /// <summary>Decay shape from lr to <see cref="MinLrRatio"/>·lr at the last step (wpe): a name of <see cref="Training.LrSchedule"/> ("cos", the default, or the reference's "lin", "lin0", "lin00", "linT", "exp").</summary>
    public string Decay { get; init; } = "cos";
    public double MinLrRatio { get; init; } = 0.01;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    /// <summary>Decoupled weight decay on conv weights (not biases, norms or the codebook).</summary>
    public double WeightDecay { get; init; } = 0.005;
    /// <summary>Clip the global gradient norm to this (0: off).</summary>
    public double GradClip { get; init; } = 2.0;

    /// <summary>"l1", "l2" or "l1+l2": the pixel reconstruction loss on the unclamped decoder output.</summary>
    public string RecLoss { get; init; } = "l1+l2";
    /// <summary>Weight of the vq loss (which already carries β from the vqvae block).</summary>
    public double VqWeight { get; init; } = 1.0;

    /// <summary>Every this many steps re-seed dead codes from the latest batch's residuals (0: off).</summary>
    public int DeadCodeEvery { get; init; } = 200;
    /// <summary>A code is dead when its hit EMA is below ratio × (B·h·w / V) at every scale (the reference's usage margin uses 0.08).</summary>
    public double DeadCodeRatio { get; init; } = 0.08;

    /// <summary>Weight of VQGAN's adversarial loss (PatchGAN discriminator, adaptive weight); 0: off, no discriminator.</summary>
    public double DiscWeight { get; init; }
    /// <summary>The step from which the adversarial terms apply (VQGAN's disc_start): reconstruction learns alone before it.</summary>
    public int DiscStart { get; init; } = 5000;
    /// <summary>"hinge" (VQGAN's default) or "vanilla" (softplus, i.e. binary cross-entropy on logits) discriminator loss.</summary>
    public string DiscLoss { get; init; } = "hinge";
    /// <summary>Scale the generator's adversarial term by ‖∇L_rec‖ / ‖∇L_G‖ at the decoder's last layer (VQGAN); off: disc_weight alone.</summary>
    public bool DiscAdaptive { get; init; } = true;
    /// <summary>Stride-2 layers of the PatchGAN discriminator (3 in VQGAN); the image must leave a logit map of at least 1×1.</summary>
    public int DiscLayers { get; init; } = 3;
    /// <summary>Channels of the discriminator's first layer (doubling per layer up to 8×).</summary>
    public int DiscChannels { get; init; } = 64;
    /// <summary>The discriminator's peak learning rate, following the same warmup and decay; null: lr.</summary>
    public double? DiscLr { get; init; }
    /// <summary>The discriminator's Adam betas (VQGAN: 0.5, 0.9); no weight decay.</summary>
    public double DiscBeta1 { get; init; } = 0.5;
    public double DiscBeta2 { get; init; } = 0.9;

    public bool Resize { get; init; } = true;
    public bool Hflip { get; init; }
    public bool Strict { get; init; }

    public int LogEvery { get; init; } = 20;
    public int EvalEvery { get; init; } = 1000;
    public int EvalImages { get; init; } = 500;
    public int GridImages { get; init; } = 8;
    public int CheckpointEvery { get; init; } = 2000;
    public int KeepCheckpoints { get; init; } = 3;
    public int Prefetch { get; init; } = 2;

    /// <summary>A model folder whose `vae.*` weights the run starts from instead of a fresh initialisation (fine-tuning); null: none.</summary>
    public string? InitFrom { get; init; }
    /// <summary>SHA-256 of <see cref="InitFrom"/>'s weights file, recorded when the run starts.</summary>
    public string? InitFromSha256 { get; init; }

    /// <summary>Settings that may differ between a checkpoint and the run resuming it.</summary>
    public static IReadOnlySet<string> ChangeableOnResume { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "grad_accum",
        "steps", "log_every", "eval_every", "eval_images", "grid_images", "checkpoint_every", "keep_checkpoints", "prefetch", "strict",
    };

    public TokenizerTrainConfig Validate()
    {
        Require(Steps >= 1, $"steps must be positive but is {Steps}");
        Require(BatchSize >= 1, $"batch_size must be positive but is {BatchSize}");
        Require(GradAccum >= 1 && GradAccum <= BatchSize, $"grad_accum must lie in [1, batch_size = {BatchSize}] but is {GradAccum}");
        Require(Lr > 0 && double.IsFinite(Lr), $"lr must be positive but is {Lr}");
        Require(WarmupSteps >= 0, $"warmup_steps must be 0 or more but is {WarmupSteps}");
        Require(WarmupStartRatio is >= 0 and <= 1, $"warmup_start_ratio must lie in [0, 1] but is {WarmupStartRatio}");
        Require(Training.LrSchedule.IsKnown(Decay), $"decay must be {Training.LrSchedule.KnownText} but is '{Decay}'");
        Require(MinLrRatio is >= 0 and <= 1, $"min_lr_ratio must lie in [0, 1] but is {MinLrRatio}");
        // exp decays geometrically towards the floor, which cannot be 0 (the reference fails on log(0) there too).
        Require(Decay != "exp" || MinLrRatio > 0, "min_lr_ratio must be above 0 for the exp decay, which falls geometrically to it");
        Require(Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1, $"betas must lie in [0, 1) but are ({Beta1}, {Beta2})");
        Require(Eps > 0, $"eps must be positive but is {Eps}");
        Require(WeightDecay >= 0, $"weight_decay must be 0 or more but is {WeightDecay}");
        Require(GradClip >= 0, $"grad_clip must be 0 (off) or positive but is {GradClip}");
        Require(RecLoss is "l1" or "l2" or "l1+l2", $"rec_loss must be 'l1', 'l2' or 'l1+l2' but is '{RecLoss}'");
        Require(VqWeight >= 0, $"vq_weight must be 0 or more but is {VqWeight}");
        Require(DeadCodeEvery >= 0, $"dead_code_every must be 0 (off) or positive but is {DeadCodeEvery}");
        Require(DeadCodeRatio >= 0, $"dead_code_ratio must be 0 or more but is {DeadCodeRatio}");
        Require(DiscWeight >= 0 && double.IsFinite(DiscWeight), $"disc_weight must be 0 (off) or positive but is {DiscWeight}");
        Require(DiscStart >= 0, $"disc_start must be 0 or more but is {DiscStart}");
        Require(DiscWeight == 0 || DiscStart < Steps, $"disc_start {DiscStart} is not below steps {Steps}, so the adversarial loss (disc_weight {DiscWeight}) would never apply; lower --disc-start");
        Require(DiscLoss is "hinge" or "vanilla", $"disc_loss must be 'hinge' or 'vanilla' but is '{DiscLoss}'");
        Require(DiscLayers is >= 1 and <= 8, $"disc_layers must lie in [1, 8] but is {DiscLayers}");
        Require(DiscChannels >= 1, $"disc_channels must be positive but is {DiscChannels}");
        Require(DiscLr is null || (DiscLr > 0 && double.IsFinite(DiscLr.Value)), $"disc_lr must be positive but is {DiscLr}");
        Require(DiscBeta1 is >= 0 and < 1 && DiscBeta2 is >= 0 and < 1, $"disc betas must lie in [0, 1) but are ({DiscBeta1}, {DiscBeta2})");
        Require(LogEvery >= 1, $"log_every must be positive but is {LogEvery}");
        Require(EvalEvery >= 0, $"eval_every must be 0 (only at the end) or positive but is {EvalEvery}");
        Require(EvalImages >= 0, $"eval_images must be 0 (no evaluation) or positive but is {EvalImages}");
        Require(GridImages >= 0, $"grid_images must be 0 or more but is {GridImages}");
        Require(CheckpointEvery >= 0, $"checkpoint_every must be 0 (only at the end) or positive but is {CheckpointEvery}");
        Require(KeepCheckpoints >= 1, $"keep_checkpoints must be at least 1 but is {KeepCheckpoints}");
        Require(Prefetch >= 0, $"prefetch must be 0 or more but is {Prefetch}");
        return this;
    }

    /// <summary>The snake_case names of the settings that differ between two configs (in declaration order).</summary>
    public static List<(string Name, string Ours, string Theirs)> Differences(TokenizerTrainConfig a, TokenizerTrainConfig b) =>
        JsonConfig.Differences(a, b);

    public static TokenizerTrainConfig FromJson(JsonElement element) => JsonConfig.Deserialize<TokenizerTrainConfig>(element, "train_tokenizer").Validate();

    private static void Require(bool ok, string sentence)
    {
        if (!ok) throw new VarSharpException($"Invalid tokenizer training config: {sentence}.");
    }
}
