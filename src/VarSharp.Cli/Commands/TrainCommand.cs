using System.CommandLine;
using System.Globalization;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Training;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>`train`: trains the VAR transformer on a frozen tokenizer's token pyramids, or resumes a run.</summary>
internal static class TrainCommand
{
    private static readonly VarTrainConfig Defaults = new();
    public const int DefaultDepth = 4;

    public static Command Create()
    {
        var o = new Options();
        var command = new Command("train",
            "Train the VAR transformer on a frozen tokenizer (Fashion-MNIST by default), or continue a run with --resume; see docs/training.md");
        foreach (var option in o.All) command.Options.Add(option);
        command.SetAction(parse => Run(parse, o));
        return command;
    }

    private sealed class Options
    {
        public readonly Option<string?> Tokenizer = new("--tokenizer", "-t") { Description = "Model folder of the trained tokenizer (e.g. RUN/checkpoints/step-N/model); on --resume optional, must match" };
        public readonly Option<string?> Data = new("--data") { Description = $"Fashion-MNIST idx folder or image folder (default {Defaults.Data})" };
        public readonly Option<string?> Out = new("--out", "-o") { Description = "New run folder (must not exist or be empty)" };
        public readonly Option<string?> Resume = new("--resume") { Description = "Continue a run folder (its latest checkpoint) or a checkpoint folder" };
        public readonly Option<long?> StopAfter = new("--stop-after") { Description = "Stop (and checkpoint) once this step is reached, to resume later" };
        public readonly Option<int?> Threads = new("--threads") { Description = "torch threads (same seed + same threads → identical weights)" };
        public readonly Option<int?> Depth = new("--depth") { Description = $"Transformer blocks; width 64·depth and depth heads unless given ({DefaultDepth})" };
        public readonly Option<int?> EmbedDim = new("--embed-dim") { Description = "Width C (default 64·depth)" };
        public readonly Option<int?> NumHeads = new("--num-heads") { Description = "Attention heads (default depth)" };
        public readonly Option<double?> MlpRatio = new("--mlp-ratio") { Description = "FFN width / C (4)" };
        public readonly Option<bool?> AttnL2Norm = new("--attn-l2-norm") { Description = "L2-normalised attention with a learned scale (true)" };
        public readonly Option<bool?> SharedAln = new("--shared-aln") { Description = "One AdaLN projection shared by all blocks (false)" };
        public readonly Option<double?> CondDropRate = new("--cond-drop-rate") { Description = "Label dropout for classifier-free guidance (0.1)" };
        public readonly Option<double?> DropPath = new("--drop-path") { Description = "Stochastic depth rate of the last block (0.1·depth/24)" };
        public readonly Option<int?> Steps = new("--steps") { Description = $"Optimizer steps ({Defaults.Steps})" };
        public readonly Option<int?> BatchSize = new("--batch-size", "-b") { Description = $"Images per step ({Defaults.BatchSize})" };
        public readonly Option<double?> Tblr = new("--tblr") { Description = $"Base lr per 256 images; peak lr = tblr·batch/256 ({Defaults.Tblr})" };
        public readonly Option<int?> WarmupSteps = new("--warmup-steps") { Description = "Linear warmup steps (2% of --steps)" };
        public readonly Option<string?> Decay = new("--decay") { Description = $"lin0, lin or cos decay after warmup ({Defaults.Decay})" };
        public readonly Option<double?> MinLrRatio = new("--min-lr-ratio") { Description = $"Final lr / peak lr ({Defaults.MinLrRatio})" };
        public readonly Option<double?> WeightDecay = new("--weight-decay") { Description = $"AdamW weight decay on the decay group ({Defaults.WeightDecay})" };
        public readonly Option<double?> GradClip = new("--grad-clip") { Description = $"Global gradient-norm clip, 0 = off ({Defaults.GradClip})" };
        public readonly Option<double?> LabelSmooth = new("--label-smooth") { Description = "Label smoothing of the training loss (0)" };
        public readonly Option<ulong?> Seed = new("--seed") { Description = "Seed for weights, data order, label dropout and drop path (0)" };
        public readonly Option<int?> LogEvery = new("--log-every") { Description = $"Log line every N steps ({Defaults.LogEvery})" };
        public readonly Option<int?> EvalEvery = new("--eval-every") { Description = $"Held-out loss/accuracy every N steps ({Defaults.EvalEvery})" };
        public readonly Option<int?> EvalImages = new("--eval-images") { Description = $"Held-out images evaluated, 0 = none ({Defaults.EvalImages})" };
        public readonly Option<int?> SampleEvery = new("--sample-every") { Description = $"Sample grid every N steps ({Defaults.SampleEvery})" };
        public readonly Option<int?> SampleClasses = new("--sample-classes") { Description = $"Classes in the grid, two images each, 0 = no grids ({Defaults.SampleClasses})" };
        public readonly Option<double?> SampleCfg = new("--sample-cfg") { Description = $"Guidance scale of the grids ({Defaults.SampleCfg})" };
        public readonly Option<long?> SampleSeed = new("--sample-seed") { Description = "Seed of the grids, the same at every step (0)" };
        public readonly Option<int?> CheckpointEvery = new("--checkpoint-every") { Description = $"Checkpoint every N steps ({Defaults.CheckpointEvery})" };
        public readonly Option<int?> KeepCheckpoints = new("--keep-checkpoints") { Description = $"Checkpoints kept ({Defaults.KeepCheckpoints})" };
        public readonly Option<int?> Prefetch = new("--prefetch") { Description = $"Batches prepared ahead when tokenizing per batch ({Defaults.Prefetch})" };
        public readonly Option<string?> TokenCache = new("--token-cache") { Description = "Folder for the token cache (default: the run folder); shareable between runs" };
        public readonly Option<bool> NoResize = new("--no-resize") { Description = "Image folders: require size×size images instead of resizing + cropping" };
        public readonly Option<bool> Hflip = new("--hflip") { Description = "Random horizontal flips of training images (tokenizes per batch)" };
        public readonly Option<bool> Strict = new("--strict") { Description = "Stop at the first unreadable image instead of skipping and counting it" };

        public IEnumerable<Option> All => GetType().GetFields().Select(f => f.GetValue(this)).OfType<Option>();
    }

    private static int Run(ParseResult parse, Options o)
    {
        LongRun.SetThreads(parse.GetValue(o.Threads));
        var resume = parse.GetValue(o.Resume);
        var outDir = parse.GetValue(o.Out);
        var tokenizer = parse.GetValue(o.Tokenizer);
        VarTrainer trainer;
        if (resume is not null)
        {
            var (_, storedModel, storedTrain, _) = VarTrainer.ReadCheckpointConfig(resume);
            var train = ApplyTrain(parse, o, storedTrain);
            trainer = VarTrainer.Resume(resume, ApplyModel(parse, o, storedModel), train, tokenizer, outDir);
        }
        else
        {
            if (outDir is null) throw new VarSharpException("Give a new run folder with --out DIR, or continue a run with --resume DIR.");
            if (tokenizer is null) throw new VarSharpException("Give the trained tokenizer with --tokenizer DIR (a model folder such as RUN/checkpoints/step-N/model).");
            var folder = Path.GetFullPath(tokenizer);
            if (!Directory.Exists(folder)) throw new VarSharpException($"Tokenizer folder {folder} does not exist.");
            var tokenizerConfig = ModelFolder.ReadVqVaeConfig(ModelFolder.ConfigPath(folder));
            var train = ApplyTrain(parse, o, new VarTrainConfig { Tokenizer = folder });
            var data = VarTrainer.OpenData(tokenizerConfig, train);
            int depth = parse.GetValue(o.Depth) ?? DefaultDepth;
            if (depth < 1) throw new VarSharpException($"--depth must be at least 1 but is {depth}.");
            var model = ApplyModel(parse, o, VarTrainer.DefaultModelConfig(tokenizerConfig, data.Train.ClassNames.Count, depth));
            trainer = VarTrainer.Start(outDir, model, train, data: data);
        }
        using (trainer)
            return Train(parse, trainer, parse.GetValue(o.StopAfter));
    }

    private static int Train(ParseResult parse, VarTrainer trainer, long? stopAfter)
    {
        var writer = parse.InvocationConfiguration.Output;
        var cfg = trainer.Config;
        var m = trainer.ModelConfig;
        long startStep = trainer.Step;
        writer.WriteLine(Invariant(
            $"run {trainer.RunDirectory}: VAR depth {m.Depth}, width {m.EmbedDim}, {m.NumHeads} heads, {trainer.Model.parameters().Sum(p => p.numel()):N0} parameters; {m.NumClasses} classes, V={m.VocabSize}, scales {string.Join(",", m.PatchNums)} ({m.L} tokens); batch {cfg.BatchSize}, peak lr {cfg.Lr:0.###e+0}; step {startStep}/{cfg.Steps}, {get_num_threads()} threads"));

        // The rate is that of this session's training steps, not counting tokenization.
        var (result, rate) = TrainingConsole.Run(parse, cfg.Steps, startStep, cfg.LogEvery,
            (observe, token) => trainer.Run(observe, token, stopAfter),
            e => e is VarStepEvent s ? new StepLine(s.Step, s.TotalSteps, s.StepsPerSecond, Invariant($"loss {s.Loss:0.0000} acc {s.Accuracy:0.00}% lr {s.Lr:0.00e+0}")) : null,
            e => e switch
            {
                VarEvalEvent ev => Describe(ev),
                SampleGridEvent g => $"step {g.Step}: samples {g.Path}",
                MessageEvent msg => msg.Text,
                _ => null,
            });
        string eval = result.LastEval is { } ev2 ? Invariant($"held-out loss {ev2.LossMean:0.000}, accuracy {ev2.AccMean:0.00}% (last scale {ev2.AccTail:0.00}%); ") : "";
        writer.WriteLine(Invariant(
            $"{(result.Finished ? "finished" : "stopped")} at step {result.Step}/{cfg.Steps} ({rate:0.00} steps/s); {eval}model folder {(result.LastCheckpoint is null ? "(none)" : CheckpointWriter.ModelFolderOf(result.LastCheckpoint))}"));
        if (!result.Finished) writer.WriteLine($"continue with: varsharp train --resume {trainer.RunDirectory}");
        return 0;
    }

    private static string Describe(VarEvalEvent e) => Invariant(
        $"step {e.Step}: held-out ({e.Images} images) loss {e.Metrics.LossMean:0.0000} (last scale {e.Metrics.LossTail:0.0000}), accuracy {e.Metrics.AccMean:0.00}% (last scale {e.Metrics.AccTail:0.00}%)");

    private static string Invariant(FormattableString s) => TrainingConsole.Invariant(s);

    private static VarConfig ApplyModel(ParseResult p, Options o, VarConfig m)
    {
        if (p.GetValue(o.Depth) is { } depth && depth != m.Depth)
        {
            // A new depth re-derives what the presets tie to it, unless given explicitly below.
            m = m with { Depth = depth, EmbedDim = 64 * depth, NumHeads = depth, DropPathRate = 0.1 * depth / 24 };
        }
        if (p.GetValue(o.EmbedDim) is { } c) m = m with { EmbedDim = c };
        if (p.GetValue(o.NumHeads) is { } h) m = m with { NumHeads = h };
        if (p.GetValue(o.MlpRatio) is { } r) m = m with { MlpRatio = r };
        if (p.GetValue(o.AttnL2Norm) is { } l2) m = m with { AttnL2Norm = l2 };
        if (p.GetValue(o.SharedAln) is { } saln) m = m with { SharedAln = saln };
        if (p.GetValue(o.CondDropRate) is { } cd) m = m with { CondDropRate = cd };
        if (p.GetValue(o.DropPath) is { } dp) m = m with { DropPathRate = dp };
        return m.Validate();
    }

    private static VarTrainConfig ApplyTrain(ParseResult p, Options o, VarTrainConfig t)
    {
        if (p.GetValue(o.Tokenizer) is { } tok) t = t with { Tokenizer = Path.GetFullPath(tok) };
        if (p.GetValue(o.Data) is { } data) t = t with { Data = Path.GetFullPath(data) };
        if (p.GetValue(o.Steps) is { } steps) t = t with { Steps = steps };
        if (p.GetValue(o.BatchSize) is { } bs) t = t with { BatchSize = bs };
        if (p.GetValue(o.Tblr) is { } tblr) t = t with { Tblr = tblr };
        if (p.GetValue(o.WarmupSteps) is { } wu) t = t with { WarmupSteps = wu };
        if (p.GetValue(o.Decay) is { } decay) t = t with { Decay = decay };
        if (p.GetValue(o.MinLrRatio) is { } mlr) t = t with { MinLrRatio = mlr };
        if (p.GetValue(o.WeightDecay) is { } wd) t = t with { WeightDecay = wd };
        if (p.GetValue(o.GradClip) is { } clip) t = t with { GradClip = clip };
        if (p.GetValue(o.LabelSmooth) is { } ls) t = t with { LabelSmooth = ls };
        if (p.GetValue(o.Seed) is { } seed) t = t with { Seed = seed };
        if (p.GetValue(o.LogEvery) is { } le) t = t with { LogEvery = le };
        if (p.GetValue(o.EvalEvery) is { } ee) t = t with { EvalEvery = ee };
        if (p.GetValue(o.EvalImages) is { } ei) t = t with { EvalImages = ei };
        if (p.GetValue(o.SampleEvery) is { } se) t = t with { SampleEvery = se };
        if (p.GetValue(o.SampleClasses) is { } sc) t = t with { SampleClasses = sc };
        if (p.GetValue(o.SampleCfg) is { } cfg) t = t with { SampleCfg = cfg };
        if (p.GetValue(o.SampleSeed) is { } ss) t = t with { SampleSeed = ss };
        if (p.GetValue(o.CheckpointEvery) is { } ce) t = t with { CheckpointEvery = ce };
        if (p.GetValue(o.KeepCheckpoints) is { } kc) t = t with { KeepCheckpoints = kc };
        if (p.GetValue(o.Prefetch) is { } pf) t = t with { Prefetch = pf };
        if (p.GetValue(o.TokenCache) is { } tc) t = t with { TokenCache = Path.GetFullPath(tc) };
        if (p.GetResult(o.NoResize) is not null) t = t with { Resize = !p.GetValue(o.NoResize) };
        if (p.GetResult(o.Hflip) is not null) t = t with { Hflip = p.GetValue(o.Hflip) };
        if (p.GetResult(o.Strict) is not null) t = t with { Strict = p.GetValue(o.Strict) };
        return t.Validate();
    }
}
