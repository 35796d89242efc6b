using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Data;
using VarSharp.Evaluation;
using VarSharp.Tokenizer;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>The datasets a trainer reads; opened from the config's data path when not given.</summary>
public sealed record TrainingData(IImageDataset Train, IImageDataset? Eval)
{
    /// <summary>The training split shaped for a tokenizer, and the held-out split when <paramref name="evalImages"/> &gt; 0.</summary>
    public static TrainingData Open(string data, ImageFolderOptions options, int channels, int imageSize, int evalImages) => new(
        Datasets.Open(data, DataSplit.Train, channels, imageSize, options),
        evalImages > 0 ? Datasets.Open(data, DataSplit.Test, channels, imageSize, options) : null);
}

/// <summary>Something a running trainer reports.</summary>
public abstract record TrainEvent(long Step);

/// <summary>After every optimizer step: the step's loss and learning rate, and the session's mean rate.</summary>
public sealed record StepEvent(long Step, long TotalSteps, double Loss, double Lr, double StepsPerSecond) : TrainEvent(Step);

/// <summary>After an evaluation: mean PSNR over the held-out images, codebook usage per scale (%), the grid written.</summary>
public sealed record EvalEvent(long Step, double Psnr, double[] UsagePercent, string? GridPath) : TrainEvent(Step);

/// <summary>A line worth showing (checkpoint written, codes revived, data issues).</summary>
public sealed record MessageEvent(long Step, string Text) : TrainEvent(Step);

/// <summary>Where a run ended.</summary>
public sealed record TrainResult(long Step, bool Finished, string? LastCheckpoint, double? LastPsnr, double[] UsagePercent);

/// <summary>
/// Trains the multi-scale VQ-VAE: loss = reconstruction (L1, L2 or both, on the unclamped decoder output) + vq_weight
/// × vq loss (β inside), AdamW with warmup + cosine/linear decay, gradient clipping, a dead-code remedy, held-out PSNR
/// and reconstruction grids at eval intervals, a JSON-lines log, a loss plot and atomic checkpoints. A run folder holds:
/// <code>
/// run.json              the run's config (vqvae + train_tokenizer blocks)
/// log.jsonl             one JSON object per logged step / eval / remedy / checkpoint
/// loss.png              training loss and eval PSNR against the step
/// samples/recon-step-N.png   originals (top row) over reconstructions (bottom row)
/// checkpoints/step-N/   model/ (a model bundle every verb loads) + train_state.safetensors
/// </code>
/// Everything random is explicit: the weights come from a generator seeded with the seed, data order and augmentation
/// are pure functions of (seed, epoch, position), the remedy draws from its own generator whose state is checkpointed.
/// A resumed run therefore ends with the same weights, bit for bit, as an uninterrupted one (same thread count).
/// </summary>
public sealed partial class TokenizerTrainer : IDisposable
{
    public const string RunConfigFile = RunFolder.ConfigFile;
    public const string LogFile = RunFolder.LogFile;
    public const string PlotFile = RunFolder.PlotFile;
    public const string CheckpointsDir = CheckpointWriter.CheckpointsDir;
    public const string SamplesDir = RunFolder.SamplesDir;
    private const string StateFormat = "varsharp-tokenizer-train-state";
    private const ulong InitStream = 0x1417;
    private const ulong RemedyStream = 0xDEAD;
    private const ulong DropoutStream = 0xD80;

    private readonly string runDir;
    private RunLock? runLock;
    private readonly VqVae vae;
    private readonly AdamWOptimizer optimizer;
    private readonly LrSchedule schedule;
    private readonly Generator remedyGenerator;
    private readonly Generator dropoutGenerator;
    private readonly AdversarialLoss? adversarial;
    private readonly TrainingData data;
    private readonly Device device;
    // Set by Open, once the data position and the run folder are settled.
    private BatchLoader loader = null!;
    private TrainLog log = null!;
    private readonly List<(long Step, double Loss)> lossHistory = [];
    private readonly List<(long Step, double Psnr)> psnrHistory = [];
    private Tensor? evalImages;
    private long step;
    private long lastCheckpointStep = -1;
    private string? lastCheckpoint;
    // For a run started (not resumed) in this session: whether its folder existed (empty) before; null otherwise.
    private bool? newRunFolder;
    private double? lastPsnr;

    public VqVaeConfig ModelConfig { get; }
    public TokenizerTrainConfig Config { get; }
    public VqVae Model => vae;
    public AdamWOptimizer Optimizer => optimizer;
    public string RunDirectory => runDir;
    public long Step => step;

    /// <summary>Where the run computes (default CPU).</summary>
    public Device Device => device;

    private TokenizerTrainer(string runDir, VqVaeConfig model, TokenizerTrainConfig train, TrainingData? data, Device? device,
        IReadOnlyDictionary<string, Tensor>? initWeights = null)
    {
        this.runDir = runDir;
        ModelConfig = model.Validate();
        Config = train.Validate();
        this.data = data ?? OpenData(model, train);
        CheckData(this.data, model, train);
        this.device = device ?? CPU;
        vae = TrainDevice.Create(() => new VqVae(model), v =>
        {
            using var initGenerator = new Generator(RunFolder.StreamSeed(train.Seed, InitStream));
            TokenizerInit.Initialize(v, initGenerator);
            if (initWeights is not null)
            {
                InitialWeights.Apply(v, initWeights, "vae.", keepFresh: null, train.InitFrom!);
                // The loaded hit averages were counted at the source run's batch size (or never, for an imported
                // model); against this run's margin they could declare used codes dead. Usage is counted afresh.
                using (no_grad()) v.Quantizer.EmaVocabHits.zero_();
                v.Quantizer.RecordHit = 0;
            }
        }, this.device);
        try
        {
            optimizer = new AdamWOptimizer(vae.named_parameters().Select(p => (p.name, p.parameter)), Decays,
                train.Beta1, train.Beta2, train.Eps, train.WeightDecay);
            schedule = new LrSchedule(train.Lr, train.WarmupSteps, train.Steps, train.Decay, train.WarmupStartRatio, train.MinLrRatio);
            // The remedy only draws permutations of row numbers, on the CPU wherever the model lives.
            remedyGenerator = new Generator(RunFolder.StreamSeed(train.Seed, RemedyStream));
            // Dropout masks come from a generator of the run's own, on the model's device, saved in every checkpoint.
            dropoutGenerator = new Generator(RunFolder.StreamSeed(train.Seed, DropoutStream), this.device);
            vae.DropoutGenerator = dropoutGenerator;
            if (train.DiscWeight > 0)
            {
                if (PatchDiscriminator.OutputSize(model.ImageSize, train.DiscLayers) < 1)
                    throw new VarSharpException(
                        $"A {train.DiscLayers}-layer discriminator leaves no logit for {model.ImageSize}×{model.ImageSize} images; use fewer --disc-layers.");
                adversarial = new AdversarialLoss(train, model.InChannels, this.device);
            }
        }
        catch
        {
            optimizer?.Dispose();
            remedyGenerator?.Dispose();
            dropoutGenerator?.Dispose();
            vae.Dispose();
            throw;
        }
    }

    /// <summary>Weight decay on convolution weights only: not biases, norms or the codebook.</summary>
    private static bool Decays(string name, TorchSharp.Modules.Parameter p) => p.dim() >= 2 && name != TokenizerInit.CodebookName;

    /// <summary>Starts a new run in <paramref name="runDir"/>, which must not exist or be empty, on <paramref name="device"/> (default CPU).</summary>
    /// <param name="initTrust">With <see cref="TokenizerTrainConfig.InitFrom"/>: only a bundle signed by one of these keys is taken.</param>
    public static TokenizerTrainer Start(string runDir, VqVaeConfig model, TokenizerTrainConfig train, TrainingData? data = null, Device? device = null,
        BundleTrust? initTrust = null)
    {
        runDir = RunFolder.ForNewRun(runDir);
        bool existed = Directory.Exists(runDir);
        TokenizerTrainer t;
        if (train.InitFrom is { } from)
        {
            using var init = ModelFiles.Read(Path.GetFullPath(from), ModelFolder.IsTokenizerKey, initTrust);
            if (train.InitFromSha256 is { } expected && expected != init.WeightsSha256)
                throw new VarSharpException($"The initial weights in {from} have SHA-256 {init.WeightsSha256} but the config records {expected}.");
            train = train with { InitFrom = Path.GetFullPath(from), InitFromSha256 = init.WeightsSha256 };
            t = new TokenizerTrainer(runDir, model, train, data, device, init.Weights) { newRunFolder = existed };
        }
        else t = new TokenizerTrainer(runDir, model, train, data, device) { newRunFolder = existed };
        try
        {
            t.Open(new DataPosition(0, 0), truncateLogAfter: null, recheck: () => RunFolder.ForNewRun(runDir));
            CheckpointWriter.WriteText(Path.Combine(runDir, RunConfigFile), ConfigJson(model, train));
            t.LogStart(resumedFrom: null);
            return t;
        }
        catch (Exception e)
        {
            t.Dispose();
            // Losing the race for a new folder to another trainer must not delete what that trainer writes.
            if (e is not RunFolderInUseException) RunFolder.Abandon(runDir, existed);
            throw;
        }
    }

    /// <summary>The checkpoint folder a resume path names: a checkpoint itself, or a run folder's latest checkpoint.</summary>
    public static string ResolveCheckpoint(string path) => CheckpointWriter.Resolve(path);

    /// <summary>Reads the two config blocks of a checkpoint (or of a run folder's latest checkpoint).</summary>
    public static (VqVaeConfig Model, TokenizerTrainConfig Train, string Checkpoint) ReadCheckpointConfig(string path)
    {
        var ckpt = ResolveCheckpoint(path);
        var configPath = CheckpointWriter.ConfigPath(ckpt);
        // Checked against the checkpoint bundle's manifest on the bytes that are parsed.
        using var doc = ModelFiles.ReadConfig(CheckpointWriter.ModelFolderOf(ckpt));
        if (!doc.RootElement.TryGetProperty("vqvae", out var vq))
            throw new VarSharpException($"{configPath} has no 'vqvae' block, so it is not a tokenizer checkpoint.");
        if (!doc.RootElement.TryGetProperty("train_tokenizer", out var tr))
            throw new VarSharpException($"{configPath} has no 'train_tokenizer' block, so it is not a tokenizer training checkpoint.");
        return (VqVaeConfig.FromJson(vq), TokenizerTrainConfig.FromJson(tr), ckpt);
    }

    /// <summary>
    /// Continues a run from a checkpoint (or a run folder's latest). The requested configs must equal the stored ones
    /// except for <see cref="TokenizerTrainConfig.ChangeableOnResume"/>; otherwise a <see cref="VarSharpException"/>
    /// is thrown before anything is written. Output continues in the run folder holding the checkpoint, or in
    /// <paramref name="newRunDir"/> (new or empty).
    /// </summary>
    public static TokenizerTrainer Resume(string path, VqVaeConfig? model = null, TokenizerTrainConfig? train = null,
        string? newRunDir = null, TrainingData? data = null, Device? device = null)
    {
        device ??= CPU;
        var (storedModel, storedTrain, ckpt) = ReadCheckpointConfig(path);
        model ??= storedModel;
        train ??= storedTrain;
        RunFolder.CheckResumeConfigs(ckpt, "tokenizer", model, storedModel, train, storedTrain, TokenizerTrainConfig.ChangeableOnResume);
        // With the discriminator, slices change the objective (adaptive weight and BatchNorm statistics per slice).
        if (storedTrain.DiscWeight > 0 && train.GradAccum != storedTrain.GradAccum)
            throw new VarSharpException(
                $"{ckpt} was trained with grad_accum {storedTrain.GradAccum} and the adversarial loss, whose adaptive weight and BatchNorm statistics depend on the slices; resume with --grad-accum {storedTrain.GradAccum}.");

        string runDir = CheckpointWriter.ResumeRunDir(ckpt, newRunDir);
        string source = CheckpointWriter.TrainStatePath(ckpt);
        var (state, metadata) = CheckpointWriter.LoadTrainState(ckpt, StateFormat, "tokenizer", out var note);
        try
        {
            TrainDevice.CheckResume(metadata, device, ckpt);
            long stateStep = CheckpointWriter.Scalar(state, "step", source);
            void CheckPoint()
            {
                // Continuing into a new folder needs it unused, like a new run; in place, no later checkpoint there.
                if (newRunDir is not null) RunFolder.ForNewRun(runDir);
                RunFolder.CheckResumePoint(runDir, ckpt, stateStep, train.Steps, inPlace: newRunDir is null);
            }
            CheckPoint();
            var t = new TokenizerTrainer(runDir, model, train, data, device);
            try
            {
                var (ckptStep, position) = RunFolder.ReadProgress(state, source, ckpt, t.data.Train);
                t.LoadState(ckpt, state, source);
                t.step = ckptStep;
                t.Open(position, truncateLogAfter: newRunDir is null ? t.step : null, recheck: CheckPoint);
                CheckpointWriter.WriteText(Path.Combine(runDir, RunConfigFile), ConfigJson(model, train));
                t.lastCheckpointStep = t.step;
                t.lastCheckpoint = ckpt;
                t.LogStart(resumedFrom: ckpt, note);
                return t;
            }
            catch
            {
                t.Dispose();
                throw;
            }
        }
        finally
        {
            foreach (var v in state.Values) v.Dispose();
        }
    }

    private void LoadState(string ckpt, Dictionary<string, Tensor> state, string source)
    {
        CheckpointWriter.LoadModelWeights(ckpt, vae, "vae.");
        optimizer.LoadState(state, source);
        vae.Quantizer.RecordHit = CheckpointWriter.Scalar(state, "quantize.record_hit", source);
        adversarial?.LoadState(state, source);
        if (!state.TryGetValue("rng.remedy", out var rng)) throw new VarSharpException($"{source} lacks 'rng.remedy'; expected the remedy generator's state.");
        remedyGenerator.set_state(rng);
        if (ModelConfig.Dropout > 0)
        {
            if (!state.TryGetValue("rng.dropout", out var dropoutState)) throw new VarSharpException($"{source} lacks 'rng.dropout'; expected the dropout generator's state (dropout is on).");
            dropoutGenerator.set_state(dropoutState);
        }
    }

    private static TrainingData OpenData(VqVaeConfig model, TokenizerTrainConfig train) =>
        TrainingData.Open(train.Data, new ImageFolderOptions(train.Resize, train.Hflip, train.Strict), model.InChannels, model.ImageSize, train.EvalImages);

    private static void CheckData(TrainingData data, VqVaeConfig model, TokenizerTrainConfig train)
    {
        foreach (var set in new[] { data.Train, data.Eval })
        {
            if (set is null) continue;
            if (set.Channels != model.InChannels || set.ImageSize != model.ImageSize)
                throw new VarSharpException(
                    $"{set.Description} yields {set.Channels}×{set.ImageSize}×{set.ImageSize} samples but the tokenizer takes {model.InChannels}×{model.ImageSize}×{model.ImageSize}.");
        }
        if (data.Train.Count < train.BatchSize)
            throw new VarSharpException($"{data.Train.Description} has {data.Train.Count} images, fewer than one batch of {train.BatchSize}.");
    }

    public static string ConfigJson(VqVaeConfig model, TokenizerTrainConfig train) =>
        JsonSerializer.Serialize(new Dictionary<string, object> { ["vqvae"] = model, ["train_tokenizer"] = train }, JsonConfig.Options);

    /// <summary>Creates the folders and the data loader, reloads the history for the plot, opens the log.</summary>
    private void Open(DataPosition start, long? truncateLogAfter, Action? recheck = null)
    {
        runLock = RunFolder.Create(runDir, out var logPath, recheck);
        if (truncateLogAfter is { } after)
        {
            TrainLog.TruncateAfter(logPath, after);
            var lines = TrainLog.Read(logPath);
            lossHistory.AddRange(RunFolder.Series(lines, "train", "loss"));
            psnrHistory.AddRange(RunFolder.Series(lines, "eval", "psnr"));
        }
        loader = new BatchLoader(data.Train, Config.BatchSize, Config.Seed, start, Config.Prefetch);
        log = new TrainLog(logPath);
    }

    private void LogStart(string? resumedFrom, string? note = null)
    {
        log.Write("start", step, new Dictionary<string, JsonNode?>(RunFolder.ProcessFields())
        {
            ["resumed_from"] = resumedFrom,
            ["note"] = note,
            ["threads"] = torch.get_num_threads(),
            ["device"] = device.ToString(),
            ["data"] = data.Train.Description,
            ["eval_data"] = data.Eval?.Description,
            ["data_position"] = loader.Position.ToString(),
            ["parameters"] = vae.parameters().Sum(p => p.numel()),
        });
    }

    /// <summary>
    /// Trains until the configured number of steps (or <paramref name="stopAtStep"/>, or cancellation), then evaluates
    /// and checkpoints where it stopped. Returns where it ended.
    /// </summary>
    public TrainResult Run(Action<TrainEvent>? observe = null, CancellationToken cancel = default, long? stopAtStep = null) =>
        RunFolder.Guard(() => RunSteps(observe, cancel, stopAtStep), runDir, log, () => step, () => lastCheckpoint, newRunFolder, () =>
        {
            loader?.Dispose();
            log.Dispose();
        });

    private TrainResult RunSteps(Action<TrainEvent>? observe, CancellationToken cancel, long? stopAtStep)
    {
        long end = Math.Min(Config.Steps, stopAtStep ?? long.MaxValue);
        var issues = data.Train.Issues;
        if (issues.SkippedAtScan > 0) Say(observe, $"data: {issues}");
        long sessionStart = step;
        var clock = Stopwatch.StartNew();
        double windowLoss = 0, windowRec = 0, windowVq = 0, windowGrad = 0;
        int windowSteps = 0;
        var windowAdv = new AdversarialWindow();
        var windowClock = Stopwatch.StartNew();
        long tokensPerBatch = (long)Config.BatchSize * ModelConfig.LatentSize * ModelConfig.LatentSize;
        // Data-dependent codebook start: before the first step every code is dead (no hits yet), so the remedy places
        // the whole codebook on residuals of the first batch — on the scale of the encoder's output instead of ±1/V.
        // Not for a run that starts from trained weights: its codebook is what it came for.
        if (step == 0 && Config.DeadCodeEvery > 0 && end > 0 && Config.InitFrom is null)
        {
            var first = loader.Make(loader.Position);
            using var x0 = torch.tensor(first.Pixels, first.Shape, device: device);
            Remedy(x0, observe);
        }
        vae.train();
        while (step < end && !cancel.IsCancellationRequested)
        {
            using var scope = NewDisposeScope();
            var batch = loader.Next();
            var x = torch.tensor(batch.Pixels, batch.Shape, device: device);
            double lr = schedule.At(step);
            optimizer.ZeroGrad();
            var gan = adversarial is not null && adversarial.ActiveAt(step) ? adversarial : null;
            var losses = ForwardBackward(vae, x, Config, gan);
            var (lossValue, recValue, vqValue) = (losses.Loss, losses.Rec, losses.Vq);
            double gradNorm = Config.GradClip > 0
                ? nn.utils.clip_grad_norm_(optimizer.Parameters, Config.GradClip)
                : GradNorm(optimizer.Parameters);
            optimizer.Step(lr);
            if (gan is not null)
            {
                var (dLoss, real, fake) = gan.Step(losses.Slices, lr);
                windowAdv.Add(losses.GeneratorLoss, losses.AdaptiveWeight, dLoss, real, fake);
            }
            step++;

            if (!double.IsFinite(lossValue))
                throw new VarSharpException($"The loss became {lossValue} at step {step}; lower the learning rate or check the data.");
            windowLoss += lossValue;
            windowRec += recValue;
            windowVq += vqValue;
            windowGrad += gradNorm;
            windowSteps++;
            double rate = (step - sessionStart) / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            observe?.Invoke(new StepEvent(step, Config.Steps, lossValue, lr, rate));

            if (Config.DeadCodeEvery > 0 && step % Config.DeadCodeEvery == 0) Remedy(x, observe);

            if (step % Config.LogEvery == 0 || step == end)
            {
                double windowRate = windowSteps / Math.Max(windowClock.Elapsed.TotalSeconds, 1e-9);
                var usage = vae.Quantizer.UsagePercentPerScale(tokensPerBatch);
                log.Write("train", step, new Dictionary<string, JsonNode?>
                {
                    ["epoch"] = batch.Position.Epoch,
                    ["lr"] = lr,
                    ["loss"] = TrainLog.Number(windowLoss / windowSteps),
                    ["rec_loss"] = TrainLog.Number(windowRec / windowSteps),
                    ["vq_loss"] = TrainLog.Number(windowVq / windowSteps),
                    ["grad_norm"] = TrainLog.Number(windowGrad / windowSteps),
                    ["g_loss"] = windowAdv.Mean(w => w.G),
                    ["d_weight"] = windowAdv.Mean(w => w.Weight),
                    ["d_loss"] = windowAdv.Mean(w => w.D),
                    ["logits_real"] = windowAdv.Mean(w => w.Real),
                    ["logits_fake"] = windowAdv.Mean(w => w.Fake),
                    ["usage"] = TrainLog.Numbers(usage),
                    ["steps_per_s"] = TrainLog.Number(windowRate),
                    ["images_per_s"] = TrainLog.Number(windowRate * Config.BatchSize),
                    ["elapsed_s"] = TrainLog.Number(clock.Elapsed.TotalSeconds),
                });
                lossHistory.Add((step, windowLoss / windowSteps));
                windowLoss = windowRec = windowVq = windowGrad = 0;
                windowSteps = 0;
                windowAdv.Clear();
                windowClock.Restart();
            }
            bool last = step == Config.Steps;
            if (data.Eval is not null && Config.EvalImages > 0 && ((Config.EvalEvery > 0 && step % Config.EvalEvery == 0) || last))
                Evaluate(observe);
            if ((Config.CheckpointEvery > 0 && step % Config.CheckpointEvery == 0) || last) Checkpoint(observe);
        }
        vae.eval();
        if (step != lastCheckpointStep) Checkpoint(observe);
        bool finished = step >= Config.Steps;
        var finalUsage = vae.Quantizer.UsagePercentPerScale(tokensPerBatch);
        log.Write("end", step, new Dictionary<string, JsonNode?>
        {
            ["finished"] = finished,
            ["checkpoint"] = lastCheckpoint,
            ["data_issues"] = issues.ToString(),
            ["elapsed_s"] = TrainLog.Number(clock.Elapsed.TotalSeconds),
        });
        WritePlot();
        return new TrainResult(step, finished, lastCheckpoint, lastPsnr, finalUsage);
    }

    /// <summary>Runs the dead-code remedy on the residuals of <paramref name="x"/> (the batch just trained on).</summary>
    public DeadCodeReport Remedy(Tensor x, Action<TrainEvent>? observe = null)
    {
        bool wasTraining = vae.training;
        vae.eval();
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var f = vae.Encode(x);
            using var q = vae.Quantizer.Quantize(f, keepFhats: false, keepDiagnostics: true);
            double margin = DeadCodeRemedy.Margin(vae, x.shape[0], Config.DeadCodeRatio);
            var report = DeadCodeRemedy.Apply(vae.Quantizer, q.SearchedResiduals, margin, remedyGenerator);
            if (report.Rows.Length > 0) optimizer.ResetRows(TokenizerInit.CodebookName, torch.tensor(report.Rows, dtype: int64));
            if (log is not null)
                log.Write("remedy", step, new Dictionary<string, JsonNode?>
                {
                    ["dead"] = report.Dead,
                    ["revived"] = report.Revived,
                    ["revived_per_scale"] = new JsonArray(report.RevivedPerScale.Select(v => (JsonNode?)v).ToArray()),
                });
            if (report.Revived > 0)
                Say(observe, $"step {step}: {report.Dead} dead codes, re-seeded {report.Revived} (per scale {string.Join(",", report.RevivedPerScale)})");
            return report;
        }
        finally
        {
            if (wasTraining) vae.train();
        }
    }

    /// <summary>Mean PSNR over the held-out images, usage per scale, and a grid of originals over reconstructions.</summary>
    public EvalEvent Evaluate(Action<TrainEvent>? observe = null)
    {
        var evalSet = data.Eval ?? throw new VarSharpException("This run has no held-out images to evaluate on (eval_images is 0).");
        bool wasTraining = vae.training;
        vae.eval();
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            evalImages ??= LoadEvalImages(evalSet).DetachFromDisposeScope();
            long n = evalImages.shape[0];
            var psnrs = new List<double>();
            Tensor? firstRec = null;
            for (long i = 0; i < n; i += Config.BatchSize)
            {
                var x = evalImages[TensorIndex.Slice(i, Math.Min(n, i + Config.BatchSize))];
                var rec = vae.Reconstruct(x);
                psnrs.AddRange(ImageMetrics.PsnrPerImage(rec, x));
                firstRec ??= rec;
            }
            double psnr = psnrs.Average();
            long tokensPerBatch = (long)Config.BatchSize * ModelConfig.LatentSize * ModelConfig.LatentSize;
            var usage = vae.Quantizer.UsagePercentPerScale(tokensPerBatch);
            string? gridPath = null;
            int g = (int)Math.Min(Config.GridImages, firstRec!.shape[0]);
            if (g > 0)
            {
                gridPath = Path.Combine(runDir, SamplesDir, $"recon-step-{step:D7}.png");
                var originals = evalImages[TensorIndex.Slice(0, g)];
                var recs = firstRec[TensorIndex.Slice(0, g)];
                ImageIO.SavePng(gridPath, ImageIO.Grid(cat([originals, recs], 0), columns: g));
            }
            log.Write("eval", step, new Dictionary<string, JsonNode?>
            {
                ["psnr"] = TrainLog.Number(psnr),
                ["eval_images"] = n,
                ["usage"] = TrainLog.Numbers(usage),
                ["grid"] = gridPath,
            });
            psnrHistory.Add((step, psnr));
            lastPsnr = psnr;
            var e = new EvalEvent(step, psnr, usage, gridPath);
            observe?.Invoke(e);
            WritePlot();
            return e;
        }
        finally
        {
            if (wasTraining) vae.train();
        }
    }

    private Tensor LoadEvalImages(IImageDataset set)
    {
        var heldOut = set.HeldOut(Config.EvalImages);
        int n = heldOut.Count;
        int c = set.Channels, s = set.ImageSize, per = c * s * s;
        var pixels = new float[n * per];
        for (int i = 0; i < n; i++) set.Fill(heldOut[i], null, pixels.AsSpan(i * per, per));
        return torch.tensor(pixels, [n, c, s, s], device: device);
    }

    /// <summary>Writes a checkpoint for the current step and prunes old ones beyond keep_checkpoints.</summary>
    public string Checkpoint(Action<TrainEvent>? observe = null)
    {
        var dir = CheckpointWriter.StepDir(runDir, step);
        using (var scope = NewDisposeScope())
        {
            var model = vae.state_dict().Select(kv => KeyValuePair.Create("vae." + kv.Key, kv.Value)).ToList();
            var state = RunFolder.ProgressState(step, loader.Position, data.Train);
            state.Add(new("quantize.record_hit", torch.tensor(vae.Quantizer.RecordHit)));
            state.Add(new("rng.remedy", remedyGenerator.get_state()));
            if (ModelConfig.Dropout > 0) state.Add(new("rng.dropout", dropoutGenerator.get_state()));
            state.AddRange(optimizer.StateTensors());
            if (adversarial is not null) state.AddRange(adversarial.StateTensors());
            CheckpointWriter.Write(dir, ConfigJson(ModelConfig, Config), model, state,
                new Dictionary<string, string>
                {
                    ["format"] = StateFormat,
                    ["step"] = step.ToString(CultureInfo.InvariantCulture),
                    [TrainDevice.MetadataKey] = TrainDevice.Name(device),
                    [CheckpointWriter.ThreadsKey] = torch.get_num_threads().ToString(CultureInfo.InvariantCulture),
                }, producer: "varsharp train-tokenizer");
        }
        lastCheckpointStep = step;
        lastCheckpoint = dir;
        RunFolder.Checkpointed(log, runDir, Config.KeepCheckpoints, step, dir, loader.Position);
        Say(observe, $"step {step}: checkpoint {dir}");
        return dir;
    }

    private void WritePlot() => RunFolder.TryPlot(log, step, () =>
        LossPlot.Write(Path.Combine(runDir, PlotFile), lossHistory, psnrHistory,
            $"tokenizer {Path.GetFileName(runDir)}: V={ModelConfig.VocabSize}, scales {string.Join(",", ModelConfig.VPatchNums)}"));

    private void Say(Action<TrainEvent>? observe, string text) => observe?.Invoke(new MessageEvent(step, text));

    public void Dispose()
    {
        loader?.Dispose();
        log?.Dispose();
        runLock?.Dispose();
        evalImages?.Dispose();
        optimizer?.Dispose();
        remedyGenerator?.Dispose();
        dropoutGenerator?.Dispose();
        adversarial?.Dispose();
        vae.Dispose();
    }
}
