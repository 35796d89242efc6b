using System.CommandLine;
using System.Globalization;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Tokenizer;
using VarSharp.Training;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>`train`: trains the VAR transformer on a frozen tokenizer's token pyramids, or resumes a run.</summary>
internal static class TrainCommand
{
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
        public readonly TrainRunOptions Run = new();
        public readonly Option<string?> Tokenizer = new("--tokenizer", "-t") { Description = "Model folder of the trained tokenizer (e.g. RUN/checkpoints/step-N/model); on --resume optional, must match" };
        public readonly Option<string[]> Trust = TrustOption.Create("Only train on a --tokenizer (and --init-from) bundle signed by this public key (repeatable)");
        public readonly Option<int?> Depth = new("--depth") { Description = $"Transformer blocks; width 64·depth and depth heads unless given ({DefaultDepth})" };
        public readonly Option<int?> EmbedDim = new("--embed-dim") { Description = "Width C (default 64·depth)" };
        public readonly Option<int?> NumHeads = new("--num-heads") { Description = "Attention heads (default depth)" };
        public readonly Option<double?> MlpRatio = new("--mlp-ratio") { Description = "FFN width / C (4)" };
        public readonly Option<bool?> AttnL2Norm = new("--attn-l2-norm") { Description = "L2-normalised attention with a learned scale (true)" };
        public readonly Option<bool?> SharedAln = new("--shared-aln") { Description = "One AdaLN projection shared by all blocks (false)" };
        public readonly Option<double?> CondDropRate = new("--cond-drop-rate") { Description = "Label dropout for classifier-free guidance (0.1)" };
        public readonly Option<double?> DropPath = new("--drop-path") { Description = "Stochastic depth rate of the last block (0.1·depth/24)" };

        public readonly ConfigOptions<VarTrainConfig> Train = new ConfigOptions<VarTrainConfig>(new(), VarTrainConfig.FromJson)
            .AddCommon(seedUse: "Seed for weights, data order, label dropout and drop path", warmupNote: "2% of --steps",
                prefetchUse: "Batches prepared ahead when tokenizing per batch", hflipUse: "Random horizontal flips of training images; not for data with a fixed orientation, such as Fashion-MNIST's shoes (docs/training.md)",
                evalUse: "Held-out loss/accuracy every N steps")
            .Double("--tblr", "tblr", "Base lr per 256 images; peak lr = tblr·batch/256")
            .Text("--precision", "precision", "f32, or bf16: mixed precision (bfloat16 compute, float32 master weights and optimizer)")
            .Text("--decay", "decay", "Decay after warmup, the reference's sche names: lin0 (default), lin, lin00, linT (e.g. lin0.3), cos, exp")
            .Double("--progressive", "progressive", "Progressive training (the reference's --pg): the fraction of the steps after which all scales train; before, the sequence ends at a growing scale; 0 = off. Sets --decay to lin<fraction> unless given, as the reference")
            .Int("--progressive-start", "progressive_start", "Progressive training's first last scale, an index (--pg0)")
            .Double("--progressive-warmup", "progressive_warmup_steps", "Steps over which a newly added scale's loss ramps up (--pgwp, in steps)", defaultNote: "steps/300")
            .Double("--label-smooth", "label_smooth", "Label smoothing of the training loss")
            .Int("--sample-every", "sample_every", "Sample grid every N steps")
            .Int("--sample-classes", "sample_classes", "Classes in the grid (the first N; more than the model has means all), two images each, 0 = no grids")
            .Double("--sample-cfg", "sample_cfg", "Guidance scale of the grids")
            .Long("--sample-seed", "sample_seed", "Seed of the grids, the same at every step")
            .FilePath("--token-cache", "token_cache", "Folder for the token cache; shareable between runs", defaultNote: "the run folder")
            .FilePath("--init-from", "init_from", "Start from this model folder's var.* weights (fine-tuning, e.g. an imported official model); its architecture is the default", defaultNote: "a fresh initialisation")
            .Flag("--init-reset-classes", "init_reset_classes", "With --init-from: a fresh class embedding, for data with other classes than the initial model's");

        public IEnumerable<Option> All => Run.All
            .Concat(new Option[] { Tokenizer, Trust, Depth, EmbedDim, NumHeads, MlpRatio, AttnL2Norm, SharedAln, CondDropRate, DropPath })
            .Concat(Train.All);
    }

    private static int Run(ParseResult parse, Options o)
    {
        var stopAt = o.Run.StopAt(parse);
        var resume = parse.GetValue(o.Run.Resume);
        if (resume is null) LongRun.SetThreads(parse.GetValue(o.Run.Threads));
        else LongRun.SetResumeThreads(parse.InvocationConfiguration.Output, resume, parse.GetValue(o.Run.Threads));
        var outDir = parse.GetValue(o.Run.Out);
        var tokenizer = parse.GetValue(o.Tokenizer);
        var device = DeviceOption.Of(parse, o.Run.Device);
        var trust = TrustOption.Of(parse.GetValue(o.Trust));
        if (trust is not null && tokenizer is null) throw new VarSharpException("--trust checks the --tokenizer bundle, so give one with --tokenizer DIR.");
        VarTrainer trainer;
        VqVae? trusted = null;
        if (resume is not null)
        {
            var (_, storedModel, storedTrain, _) = VarTrainer.ReadCheckpointConfig(resume);
            var train = o.Train.Apply(parse, storedTrain);
            // A resume checks the given tokenizer against the checkpoint's own copy, which it then uses.
            if (trust is not null) BundleSignature.Verify(Path.GetFullPath(tokenizer!), trust);
            if (tokenizer is not null) train = train with { Tokenizer = Path.GetFullPath(tokenizer) };
            trainer = VarTrainer.Resume(resume, ApplyModel(parse, o, storedModel), train, tokenizer, outDir, device: device);
        }
        else
        {
            if (outDir is null) throw new VarSharpException("Give a new run folder with --out DIR, or continue a run with --resume DIR.");
            if (tokenizer is null) throw new VarSharpException("Give the trained tokenizer with --tokenizer DIR (a model folder such as RUN/checkpoints/step-N/model).");
            var folder = Path.GetFullPath(tokenizer);
            if (!Directory.Exists(folder)) throw PathErrors.FolderMissing(folder, "Tokenizer folder");
            // With --trust the tokenizer is loaded first, signature checked, and handed over: what was checked is what trains.
            trusted = trust is null ? null : ModelFolder.LoadTokenizer(folder, device, trust);
            try
            {
                var tokenizerConfig = trusted?.Config ?? ModelFolder.ReadVqVaeConfig(ModelFolder.ConfigPath(folder));
                var train = WithProgressiveDecay(parse, o, o.Train.Apply(parse, new VarTrainConfig { Tokenizer = folder }));
                var data = VarTrainer.OpenData(tokenizerConfig, train);
                int depth = parse.GetValue(o.Depth) ?? DefaultDepth;
                if (depth < 1) throw new VarSharpException($"--depth must be at least 1 but is {depth}.");
                // Fine-tuning starts from the initial model's architecture (for this data's classes); options still override it.
                VarConfig baseModel;
                if (train.InitFrom is { } init)
                {
                    using var doc = ModelFiles.ReadConfig(init);   // checked against its manifest when a bundle
                    baseModel = ModelFolder.ReadVarConfig(doc.RootElement, ModelFolder.ConfigPath(init)) with { NumClasses = data.Train.ClassNames.Count };
                }
                else baseModel = VarTrainer.DefaultModelConfig(tokenizerConfig, data.Train.ClassNames.Count, depth);
                var model = ApplyModel(parse, o, baseModel);
                trainer = VarTrainer.Start(outDir, model, train, tokenizer: trusted, data: data, device: trusted is null ? device : null, initTrust: trust);
            }
            catch
            {
                trusted?.Dispose();
                throw;
            }
        }
        using (trusted)
        using (trainer)
            return Train(parse, trainer, stopAt);
    }

    // The reference's train.py replaces the decay with "lin" + pg whenever pg > 0; an explicit --decay wins here.
    // (pg = 1 would make that schedule divide by zero, so the default decay stays then.)
    private static VarTrainConfig WithProgressiveDecay(ParseResult parse, Options o, VarTrainConfig train) =>
        train.Progressive is > 0 and < 1 && !o.Train.Given(parse, "decay")
            ? train with { Decay = "lin" + ProgressiveSchedule.PythonG(train.Progressive) }
            : train;

    private static int Train(ParseResult parse, VarTrainer trainer, long? stopAfter)
    {
        var writer = parse.InvocationConfiguration.Output;
        var cfg = trainer.Config;
        var m = trainer.ModelConfig;
        long startStep = trainer.Step;
        writer.WriteLine(Invariant(
            $"run {trainer.RunDirectory}: VAR depth {m.Depth}, width {m.EmbedDim}, {m.NumHeads} heads, {trainer.Model.parameters().Sum(p => p.numel()):N0} parameters; {m.NumClasses} classes, V={m.VocabSize}, scales {string.Join(",", m.PatchNums)} ({m.L} tokens); batch {cfg.BatchSize}{TrainingConsole.Slices(cfg.GradAccum)}{(cfg.Precision == "f32" ? "" : ", mixed precision " + cfg.Precision)}, peak lr {cfg.Lr:0.###e+0}; step {startStep}/{cfg.Steps}, {get_num_threads()} threads"));

        // The rate is that of this session's training steps, not counting tokenization.
        var (result, rate, stopExit) = TrainingConsole.Run(parse, cfg.Steps, startStep, cfg.LogEvery,
            (observe, token) => trainer.Run(observe, token, stopAfter),
            e => e is VarStepEvent s ? new StepLine(s.Step, s.TotalSteps, s.StepsPerSecond, Invariant($"loss {s.Loss:0.0000} acc {s.Accuracy:0.00}% lr {s.Lr:0.00e+0}{StageText(s.Stage)}")) : null,
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
        // A signal that came during the last step or the final checkpoint stopped nothing: the run finished.
        return result.Finished ? 0 : stopExit ?? 0;
    }

    // Progressive training: which scales the step trained (0..k) and the newest one's loss weight.
    private static string StageText(ProgressiveStage? stage) =>
        stage is { Truncates: true } s ? Invariant($" scales 0-{s.LastScale} (w {s.NewestWeight:0.00})") : "";

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
}
