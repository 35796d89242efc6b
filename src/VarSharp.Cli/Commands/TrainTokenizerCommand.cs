using System.CommandLine;
using System.Globalization;
using VarSharp.Config;
using VarSharp.Training;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>`train-tokenizer`: trains the multi-scale VQ-VAE on Fashion-MNIST or an image folder, or resumes a run.</summary>
internal static class TrainTokenizerCommand
{
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
        public readonly TrainRunOptions Run = new();
        public readonly Option<string?> ModelConfig = new("--model-config") { Description = "JSON file with a 'vqvae' block to start from instead of the Fashion-MNIST preset" };

        public readonly ConfigOptions<VqVaeConfig> Model = new ConfigOptions<VqVaeConfig>(TokenizerPresets.FashionMnist, VqVaeConfig.FromJson)
            .Int("--ch", "ch", "Base channels, a multiple of 32")
            .IntList("--ch-mult", "ch_mult", "Channel multipliers per level; the downsample is 2^(levels-1)")
            .Int("--z-channels", "z_channels", "Latent/codebook channels")
            .Int("--vocab", "vocab_size", "Codebook size")
            .IntList("--patch-nums", "v_patch_nums", "Scales, comma-separated; the last is the latent size")
            .Int("--num-res-blocks", "num_res_blocks", "Res blocks per level")
            .Int("--in-channels", "in_channels", "1 (grayscale) or 3 (RGB; grayscale data is replicated)")
            .Double("--beta", "beta", "Commitment weight β inside the vq loss");

        public readonly ConfigOptions<TokenizerTrainConfig> Train = new ConfigOptions<TokenizerTrainConfig>(new(), TokenizerTrainConfig.FromJson)
            .AddCommon(seedUse: "Seed for weights, data order, augmentation and the remedy", evalUse: "Held-out PSNR + grid every N steps")
            .Double("--lr", "lr", "Peak learning rate")
            .Text("--decay", "decay", "Decay after warmup: cos (default) or the reference's lin, lin0, lin00, linT (e.g. lin0.3), exp")
            .Double("--beta1", "beta1", "AdamW β1")
            .Double("--beta2", "beta2", "AdamW β2")
            .Text("--rec-loss", "rec_loss", "l1, l2 or l1+l2")
            .Double("--vq-weight", "vq_weight", "Weight of the vq loss")
            .Int("--dead-code-every", "dead_code_every", "Re-seed dead codes every N steps, 0 = off")
            .Double("--dead-code-ratio", "dead_code_ratio", "Dead below ratio × B·h·w/V EMA hits at every scale")
            .Double("--disc-weight", "disc_weight", "Weight of VQGAN's adversarial loss (PatchGAN discriminator), 0 = off")
            .Int("--disc-start", "disc_start", "Step from which the adversarial loss applies")
            .Text("--disc-loss", "disc_loss", "hinge or vanilla discriminator loss")
            .Flag("--no-disc-adaptive", "disc_adaptive", "Use disc_weight alone instead of VQGAN's adaptive weight", whenGiven: false)
            .Int("--disc-layers", "disc_layers", "Stride-2 layers of the discriminator")
            .Int("--disc-channels", "disc_channels", "Channels of the discriminator's first layer")
            .Double("--disc-lr", "disc_lr", "Discriminator peak learning rate", defaultNote: "--lr")
            .Int("--grid-images", "grid_images", "Images in the reconstruction grid")
            .FilePath("--init-from", "init_from", "Start from this model folder's vae.* weights (fine-tuning, e.g. an imported official tokenizer); its vqvae block is the default model", defaultNote: "a fresh initialisation");

        public readonly Option<string[]> Trust = TrustOption.Create("Only start from an --init-from bundle signed by this public key (repeatable)");

        public IEnumerable<Option> All => Run.All.Append(ModelConfig).Append(Trust).Concat(Model.All).Concat(Train.All);
    }

    private static int Run(ParseResult parse, Options o)
    {
        var stopAt = o.Run.StopAt(parse);
        var resume = parse.GetValue(o.Run.Resume);
        if (resume is null) LongRun.SetThreads(parse.GetValue(o.Run.Threads));
        else LongRun.SetResumeThreads(parse.InvocationConfiguration.Output, resume, parse.GetValue(o.Run.Threads));
        var outDir = parse.GetValue(o.Run.Out);
        var device = DeviceOption.Of(parse, o.Run.Device);
        TokenizerTrainer trainer;
        if (resume is not null)
        {
            if (parse.GetResult(o.Trust) is { Implicit: false })
                throw new VarSharpException("--trust checks an --init-from bundle when a run starts; a resume reads only its own checkpoint, so leave it out.");
            if (parse.GetValue(o.ModelConfig) is not null)
                throw new VarSharpException("--model-config cannot be combined with --resume; the checkpoint holds the model's config.");
            var (storedModel, storedTrain, _) = TokenizerTrainer.ReadCheckpointConfig(resume);
            trainer = TokenizerTrainer.Resume(resume, o.Model.Apply(parse, storedModel), o.Train.Apply(parse, storedTrain), outDir, device: device);
        }
        else
        {
            if (outDir is null) throw new VarSharpException("Give a new run folder with --out DIR, or continue a run with --resume DIR.");
            var train = o.Train.Apply(parse, new TokenizerTrainConfig());
            var trust = TrustOption.Of(parse.GetValue(o.Trust));
            if (trust is not null && train.InitFrom is null) throw new VarSharpException("--trust checks the --init-from bundle, so give one with --init-from DIR.");
            // The signature first: not even the config of an untrusted bundle is read.
            if (trust is not null) Checkpoints.BundleSignature.Verify(Path.GetFullPath(train.InitFrom!), trust);
            var baseModel = parse.GetValue(o.ModelConfig) is { } file ? Checkpoints.ModelFolder.ReadVqVaeConfig(file)
                : train.InitFrom is { } init ? InitConfig(init)
                : TokenizerPresets.FashionMnist;
            trainer = TokenizerTrainer.Start(outDir, o.Model.Apply(parse, baseModel), train, device: device, initTrust: trust);
        }
        using (trainer)
            return Train(parse, trainer, stopAt);
    }

    /// <summary>The vqvae block of an --init-from folder, read through its manifest check when it is a bundle.</summary>
    private static VqVaeConfig InitConfig(string dir)
    {
        using var doc = Checkpoints.ModelFiles.ReadConfig(dir);
        return Checkpoints.ModelFolder.ReadVqVaeConfig(doc.RootElement, Checkpoints.ModelFolder.ConfigPath(dir));
    }

    private static int Train(ParseResult parse, TokenizerTrainer trainer, long? stopAfter)
    {
        var writer = parse.InvocationConfiguration.Output;
        var cfg = trainer.Config;
        var m = trainer.ModelConfig;
        long startStep = trainer.Step;
        writer.WriteLine(Invariant(
            $"run {trainer.RunDirectory}: {trainer.Model.parameters().Sum(p => p.numel()):N0} parameters, {m.ImageSize}x{m.ImageSize}x{m.InChannels}, scales {string.Join(",", m.VPatchNums)}, V={m.VocabSize}; batch {cfg.BatchSize}{TrainingConsole.Slices(cfg.GradAccum)}; step {startStep}/{cfg.Steps}, {get_num_threads()} threads"));

        var (result, rate, stopExit) = TrainingConsole.Run(parse, cfg.Steps, startStep, cfg.LogEvery,
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
        // A signal that came during the last step or the final checkpoint stopped nothing: the run finished.
        return result.Finished ? 0 : stopExit ?? 0;
    }

    private static string Describe(EvalEvent e) => Invariant(
        $"step {e.Step}: held-out PSNR {e.Psnr:0.00} dB, usage per scale {Usage(e.UsagePercent)}{(e.GridPath is null ? "" : ", grid " + e.GridPath)}");

    private static string Usage(double[] percent) => string.Join(" ", percent.Select(u => u.ToString("0", CultureInfo.InvariantCulture) + "%"));

    private static string Invariant(FormattableString s) => TrainingConsole.Invariant(s);
}
