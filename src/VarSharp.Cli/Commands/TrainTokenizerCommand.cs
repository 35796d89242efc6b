using System.CommandLine;
using System.Globalization;
using VarSharp.Config;
using VarSharp.Training;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>`train-tokenizer`: trains the multi-scale VQ-VAE on Fashion-MNIST or an image folder, or resumes a run.</summary>
internal static class TrainTokenizerCommand
{
    private static readonly TokenizerTrainConfig Defaults = new();

    public static Command Create()
    {
        var o = new Options();
        var command = new Command("train-tokenizer",
            "Train the multi-scale VQ-VAE tokenizer (Fashion-MNIST by default), or continue a run with --resume; see docs/training.md");
        foreach (var option in o.All) command.Options.Add(option);
        command.SetAction(parse => Run(parse, o));
        return command;
    }

    private sealed class Options
    {
        public readonly Option<string?> Data = new("--data") { Description = $"Fashion-MNIST idx folder or image folder (default {Defaults.Data})" };
        public readonly Option<string?> Out = new("--out", "-o") { Description = "New run folder (must not exist or be empty)" };
        public readonly Option<string?> Resume = new("--resume") { Description = "Continue a run folder (its latest checkpoint) or a checkpoint folder" };
        public readonly Option<long?> StopAfter = new("--stop-after") { Description = "Stop (and checkpoint) once this step is reached, to resume later" };
        public readonly Option<int?> Threads = new("--threads") { Description = "torch threads (same seed + same threads → identical weights)" };
        public readonly Option<string?> ModelConfig = new("--model-config") { Description = "JSON file with a 'vqvae' block to start from instead of the Fashion-MNIST preset" };
        public readonly Option<int?> Ch = new("--ch") { Description = "Base channels (multiple of 32; preset 64)" };
        public readonly Option<string?> ChMult = new("--ch-mult") { Description = "Channel multipliers per level, e.g. 1,2,2 (downsample 2^(levels-1))" };
        public readonly Option<int?> ZChannels = new("--z-channels") { Description = "Latent/codebook channels (preset 16)" };
        public readonly Option<int?> Vocab = new("--vocab") { Description = "Codebook size (preset 512)" };
        public readonly Option<string?> PatchNums = new("--patch-nums") { Description = "Scales, e.g. 1,2,3,4,6,8; the last is the latent size" };
        public readonly Option<int?> NumResBlocks = new("--num-res-blocks") { Description = "Res blocks per level (preset 1)" };
        public readonly Option<int?> InChannels = new("--in-channels") { Description = "1 (grayscale) or 3 (RGB; grayscale data is replicated)" };
        public readonly Option<double?> Beta = new("--beta") { Description = "Commitment weight β inside the vq loss (0.25)" };
        public readonly Option<int?> Steps = new("--steps") { Description = $"Optimizer steps ({Defaults.Steps})" };
        public readonly Option<int?> BatchSize = new("--batch-size", "-b") { Description = $"Images per step ({Defaults.BatchSize})" };
        public readonly Option<double?> Lr = new("--lr") { Description = $"Peak learning rate ({Defaults.Lr})" };
        public readonly Option<int?> WarmupSteps = new("--warmup-steps") { Description = $"Linear warmup steps ({Defaults.WarmupSteps})" };
        public readonly Option<string?> Decay = new("--decay") { Description = "cos or lin decay after warmup (cos)" };
        public readonly Option<double?> MinLrRatio = new("--min-lr-ratio") { Description = $"Final lr / peak lr ({Defaults.MinLrRatio})" };
        public readonly Option<double?> Beta1 = new("--beta1") { Description = $"AdamW β1 ({Defaults.Beta1})" };
        public readonly Option<double?> Beta2 = new("--beta2") { Description = $"AdamW β2 ({Defaults.Beta2})" };
        public readonly Option<double?> WeightDecay = new("--weight-decay") { Description = $"AdamW decoupled weight decay on conv weights ({Defaults.WeightDecay})" };
        public readonly Option<double?> GradClip = new("--grad-clip") { Description = $"Global gradient-norm clip, 0 = off ({Defaults.GradClip})" };
        public readonly Option<string?> RecLoss = new("--rec-loss") { Description = "l1, l2 or l1+l2 (l1+l2)" };
        public readonly Option<double?> VqWeight = new("--vq-weight") { Description = $"Weight of the vq loss ({Defaults.VqWeight})" };
        public readonly Option<ulong?> Seed = new("--seed") { Description = "Seed for weights, data order, augmentation and the remedy (0)" };
        public readonly Option<int?> DeadCodeEvery = new("--dead-code-every") { Description = $"Re-seed dead codes every N steps, 0 = off ({Defaults.DeadCodeEvery})" };
        public readonly Option<double?> DeadCodeRatio = new("--dead-code-ratio") { Description = $"Dead below ratio × B·h·w/V EMA hits at every scale ({Defaults.DeadCodeRatio})" };
        public readonly Option<int?> LogEvery = new("--log-every") { Description = $"Log line every N steps ({Defaults.LogEvery})" };
        public readonly Option<int?> EvalEvery = new("--eval-every") { Description = $"Held-out PSNR + grid every N steps ({Defaults.EvalEvery})" };
        public readonly Option<int?> EvalImages = new("--eval-images") { Description = $"Held-out images evaluated, 0 = none ({Defaults.EvalImages})" };
        public readonly Option<int?> GridImages = new("--grid-images") { Description = $"Images in the reconstruction grid ({Defaults.GridImages})" };
        public readonly Option<int?> CheckpointEvery = new("--checkpoint-every") { Description = $"Checkpoint every N steps ({Defaults.CheckpointEvery})" };
        public readonly Option<int?> KeepCheckpoints = new("--keep-checkpoints") { Description = $"Checkpoints kept ({Defaults.KeepCheckpoints})" };
        public readonly Option<int?> Prefetch = new("--prefetch") { Description = $"Batches prepared ahead by the worker thread ({Defaults.Prefetch})" };
        public readonly Option<bool> NoResize = new("--no-resize") { Description = "Image folders: require size×size images instead of resizing + cropping" };
        public readonly Option<bool> Hflip = new("--hflip") { Description = "Random horizontal flips of training images" };
        public readonly Option<bool> Strict = new("--strict") { Description = "Stop at the first unreadable image instead of skipping and counting it" };

        public IEnumerable<Option> All => GetType().GetFields().Select(f => f.GetValue(this)).OfType<Option>();
    }

    private static int Run(ParseResult parse, Options o)
    {
        LongRun.SetThreads(parse.GetValue(o.Threads));
        var resume = parse.GetValue(o.Resume);
        var outDir = parse.GetValue(o.Out);
        TokenizerTrainer trainer;
        if (resume is not null)
        {
            if (parse.GetValue(o.ModelConfig) is not null)
                throw new VarSharpException("--model-config cannot be combined with --resume; the checkpoint holds the model's config.");
            var (storedModel, storedTrain, _) = TokenizerTrainer.ReadCheckpointConfig(resume);
            trainer = TokenizerTrainer.Resume(resume, ApplyModel(parse, o, storedModel), ApplyTrain(parse, o, storedTrain), outDir);
        }
        else
        {
            if (outDir is null) throw new VarSharpException("Give a new run folder with --out DIR, or continue a run with --resume DIR.");
            var baseModel = parse.GetValue(o.ModelConfig) is { } file ? Checkpoints.ModelFolder.ReadVqVaeConfig(file) : TokenizerPresets.FashionMnist;
            trainer = TokenizerTrainer.Start(outDir, ApplyModel(parse, o, baseModel), ApplyTrain(parse, o, new TokenizerTrainConfig()));
        }
        using (trainer)
            return Train(parse, trainer, parse.GetValue(o.StopAfter));
    }

    private static int Train(ParseResult parse, TokenizerTrainer trainer, long? stopAfter)
    {
        var writer = parse.InvocationConfiguration.Output;
        var cfg = trainer.Config;
        var m = trainer.ModelConfig;
        long startStep = trainer.Step;
        writer.WriteLine(Invariant(
            $"run {trainer.RunDirectory}: {trainer.Model.parameters().Sum(p => p.numel()):N0} parameters, {m.ImageSize}x{m.ImageSize}x{m.InChannels}, scales {string.Join(",", m.VPatchNums)}, V={m.VocabSize}; step {startStep}/{cfg.Steps}, {get_num_threads()} threads"));

        var (result, rate) = TrainingConsole.Run(parse, cfg.Steps, startStep, cfg.LogEvery,
            (observe, token) => trainer.Run(observe, token, stopAfter),
            e => e is StepEvent s ? new StepLine(s.Step, s.TotalSteps, s.StepsPerSecond, Invariant($"loss {s.Loss:0.0000} lr {s.Lr:0.0e+0}")) : null,
            e => e switch
            {
                EvalEvent ev => Describe(ev),
                MessageEvent msg => msg.Text,
                _ => null,
            });
        string psnr = result.LastPsnr is { } p ? Invariant($"held-out PSNR {p:0.00} dB; ") : "";
        writer.WriteLine(Invariant(
            $"{(result.Finished ? "finished" : "stopped")} at step {result.Step}/{cfg.Steps} ({rate:0.00} steps/s); {psnr}usage per scale {Usage(result.UsagePercent)}; model folder {(result.LastCheckpoint is null ? "(none)" : CheckpointWriter.ModelFolderOf(result.LastCheckpoint))}"));
        if (!result.Finished) writer.WriteLine($"continue with: varsharp train-tokenizer --resume {trainer.RunDirectory}");
        return 0;
    }

    private static string Describe(EvalEvent e) => Invariant(
        $"step {e.Step}: held-out PSNR {e.Psnr:0.00} dB, usage per scale {Usage(e.UsagePercent)}{(e.GridPath is null ? "" : ", grid " + e.GridPath)}");

    private static string Usage(double[] percent) => string.Join(" ", percent.Select(u => u.ToString("0", CultureInfo.InvariantCulture) + "%"));

    private static string Invariant(FormattableString s) => TrainingConsole.Invariant(s);

    private static VqVaeConfig ApplyModel(ParseResult p, Options o, VqVaeConfig m)
    {
        if (p.GetValue(o.Ch) is { } ch) m = m with { Ch = ch };
        if (p.GetValue(o.ChMult) is { } mult) m = m with { ChMult = IntList(mult, "--ch-mult") };
        if (p.GetValue(o.ZChannels) is { } z) m = m with { ZChannels = z };
        if (p.GetValue(o.Vocab) is { } v) m = m with { VocabSize = v };
        if (p.GetValue(o.PatchNums) is { } pn) m = m with { VPatchNums = IntList(pn, "--patch-nums") };
        if (p.GetValue(o.NumResBlocks) is { } nr) m = m with { NumResBlocks = nr };
        if (p.GetValue(o.InChannels) is { } ic) m = m with { InChannels = ic };
        if (p.GetValue(o.Beta) is { } b) m = m with { Beta = b };
        return m.Validate();
    }

    private static TokenizerTrainConfig ApplyTrain(ParseResult p, Options o, TokenizerTrainConfig t)
    {
        if (p.GetValue(o.Data) is { } data) t = t with { Data = Path.GetFullPath(data) };
        if (p.GetValue(o.Steps) is { } steps) t = t with { Steps = steps };
        if (p.GetValue(o.BatchSize) is { } bs) t = t with { BatchSize = bs };
        if (p.GetValue(o.Lr) is { } lr) t = t with { Lr = lr };
        if (p.GetValue(o.WarmupSteps) is { } wu) t = t with { WarmupSteps = wu };
        if (p.GetValue(o.Decay) is { } decay) t = t with { Decay = decay };
        if (p.GetValue(o.MinLrRatio) is { } mlr) t = t with { MinLrRatio = mlr };
        if (p.GetValue(o.Beta1) is { } b1) t = t with { Beta1 = b1 };
        if (p.GetValue(o.Beta2) is { } b2) t = t with { Beta2 = b2 };
        if (p.GetValue(o.WeightDecay) is { } wd) t = t with { WeightDecay = wd };
        if (p.GetValue(o.GradClip) is { } clip) t = t with { GradClip = clip };
        if (p.GetValue(o.RecLoss) is { } rl) t = t with { RecLoss = rl };
        if (p.GetValue(o.VqWeight) is { } vw) t = t with { VqWeight = vw };
        if (p.GetValue(o.Seed) is { } seed) t = t with { Seed = seed };
        if (p.GetValue(o.DeadCodeEvery) is { } dce) t = t with { DeadCodeEvery = dce };
        if (p.GetValue(o.DeadCodeRatio) is { } dcr) t = t with { DeadCodeRatio = dcr };
        if (p.GetValue(o.LogEvery) is { } le) t = t with { LogEvery = le };
        if (p.GetValue(o.EvalEvery) is { } ee) t = t with { EvalEvery = ee };
        if (p.GetValue(o.EvalImages) is { } ei) t = t with { EvalImages = ei };
        if (p.GetValue(o.GridImages) is { } gi) t = t with { GridImages = gi };
        if (p.GetValue(o.CheckpointEvery) is { } ce) t = t with { CheckpointEvery = ce };
        if (p.GetValue(o.KeepCheckpoints) is { } kc) t = t with { KeepCheckpoints = kc };
        if (p.GetValue(o.Prefetch) is { } pf) t = t with { Prefetch = pf };
        if (p.GetResult(o.NoResize) is not null) t = t with { Resize = !p.GetValue(o.NoResize) };
        if (p.GetResult(o.Hflip) is not null) t = t with { Hflip = p.GetValue(o.Hflip) };
        if (p.GetResult(o.Strict) is not null) t = t with { Strict = p.GetValue(o.Strict) };
        return t.Validate();
    }

    private static int[] IntList(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out result[i]))
                throw new VarSharpException($"{option} takes comma-separated integers like 1,2,3 but got '{text}'.");
        if (result.Length == 0) throw new VarSharpException($"{option} takes comma-separated integers like 1,2,3 but got '{text}'.");
        return result;
    }
}
