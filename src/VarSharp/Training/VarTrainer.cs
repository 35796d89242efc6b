using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Data;
using VarSharp.Tokenizer;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>After every optimizer step of the transformer: loss and token accuracy (%) of the batch, lr, session rate.</summary>
/// <param name="Stage">Progressive training's stage of the step (null or <see cref="ProgressiveStage.Full"/>: the whole sequence).</param>
public sealed record VarStepEvent(long Step, long TotalSteps, double Loss, double Accuracy, double Lr, double StepsPerSecond,
    ProgressiveStage? Stage = null) : TrainEvent(Step);

/// <summary>After a held-out evaluation (teacher forcing, eval mode): the reference's Lm, Lt, Accm, Acct.</summary>
public sealed record VarEvalEvent(long Step, VarTokenMetrics Metrics, int Images) : TrainEvent(Step);

/// <summary>A sample grid was written.</summary>
public sealed record SampleGridEvent(long Step, string Path) : TrainEvent(Step);

/// <summary>Progress of preparatory work (tokenizing the data): <paramref name="Done"/> of <paramref name="Total"/>.</summary>
public sealed record PrepareEvent(long Step, string What, long Done, long Total) : TrainEvent(Step);

/// <summary>Where a transformer run ended, with the latest held-out and training metrics.</summary>
public sealed record VarTrainResult(long Step, bool Finished, string? LastCheckpoint, VarTokenMetrics? LastEval, VarTokenMetrics? LastTrain);

/// <summary>
/// Trains the VAR transformer on the token pyramids of a frozen tokenizer with the reference recipe (train.py +
/// VARTrainer): teacher forcing, loss = CE per token ×1/L summed over L and averaged over B (optionally label-smoothed),
/// AdamW (0.9, 0.95) with weight decay on the reference's decay group, peak lr = tblr·B/256 with linear warmup and the
/// lin0 decay, gradient clipping, label dropout (cond_drop_rate) and drop path drawn from the trainer's own generator.
/// Every step goes through <see cref="VarTrainStep.Step"/>, the code the golden training vectors check.
/// <para>
/// When the data has no random augmentation (Fashion-MNIST), the tokens of the whole training set are computed once
/// (and cached in a file keyed by the tokenizer's digest); otherwise each batch is tokenized as it comes. A run folder
/// holds:
/// </para>
/// <code>
/// run.json              the run's config (vqvae + var + train_var blocks)
/// log.jsonl             one JSON object per logged step / eval / sample grid / checkpoint
/// loss.png              training and held-out loss, held-out accuracy against the step
/// samples/step-N.png    the sample grid: one column per class, two rows (seeds sample_seed + i)
/// checkpoints/step-N/   model/ (a bundle with vae.* and var.*: `sample -m` takes it) + train_state.safetensors
/// tokens-….safetensors  the token cache (unless token_cache names another folder)
/// </code>
/// A resumed run ends with the same weights and optimizer state, bit for bit, as an uninterrupted one (same threads).
/// </summary>
public sealed partial class VarTrainer : IDisposable
{
    public const string RunConfigFile = RunFolder.ConfigFile;
    public const string LogFile = RunFolder.LogFile;
    public const string PlotFile = RunFolder.PlotFile;
    public const string CheckpointsDir = CheckpointWriter.CheckpointsDir;
    public const string SamplesDir = RunFolder.SamplesDir;
    public const string TrainBlock = "train_var";
    private const string StateFormat = "varsharp-var-train-state";
    private const ulong InitStream = 0x1417;
    private const ulong TrainStream = 0x7A1E;

    private readonly string runDir;
    private RunLock? runLock;
    private readonly VqVae vae;
    private readonly bool ownsVae;
    private readonly VarModel model;
    private readonly VarTrainStep trainStep;
    private readonly LrSchedule schedule;
    private readonly ProgressiveSchedule progressive;
    private readonly Generator generator;
    private readonly Device device;
    private readonly TrainingData data;
    private readonly string tokenizerDigest;
    private TrainLog log = null!;
    private BatchLoader? loader;
    private DataPosition position;
    private int[]? order;
    private long orderEpoch = -1;
    private TokenPyramids? trainTokens;
    private TokenPyramids? trainTokensMirrored;
    private TokenPyramids? evalTokens;
    private readonly List<(long Step, double Value)> lossHistory = [];
    private readonly List<(long Step, double Value)> evalLossHistory = [];
    private readonly List<(long Step, double Value)> evalAccHistory = [];
    private long step;
    private long lastCheckpointStep = -1;
    private string? lastCheckpoint;
    // For a run started (not resumed) in this session: whether its folder existed (empty) before; null otherwise.
    private bool? newRunFolder;
    private VarTokenMetrics? lastEval;
    private VarTokenMetrics? lastTrain;

    public VqVaeConfig TokenizerConfig => vae.Config;
    public VarConfig ModelConfig => model.Config;
    public VarTrainConfig Config { get; }
    public VarModel Model => model;
    public VqVae Tokenizer => vae;
    public AdamWOptimizer Optimizer => trainStep.Optimizer;
    public string RunDirectory => runDir;
    public long Step => step;

    /// <summary>Where the run computes: the tokenizer's device.</summary>
    public Device Device => device;

    /// <summary>SHA-256 of the tokenizer's tensors (<see cref="TokenPyramids.Digest"/>).</summary>
    public string TokenizerDigest => tokenizerDigest;

    /// <summary>Whether batches are tokenized one by one (the data augments) rather than looked up in the precomputed pyramids.</summary>
    public bool TokenizesPerBatch => data.Train.Augments && data.Train.FlipsFor(0) is null;

    /// <summary>
    /// Whether a flip is the data's only augmentation (--hflip on Fashion-MNIST, or on an image folder without resizing):
    /// then the pyramids of both views are computed once (and cached), and each sample takes the view its key picks.
    /// </summary>
    public bool UsesFlipViews => data.Train.Augments && data.Train.FlipsFor(0) is not null;

    private VarTrainer(string runDir, VarConfig modelConfig, VarTrainConfig train, VqVae vae, bool ownsVae, TrainingData? data,
        IReadOnlyDictionary<string, Tensor>? initWeights = null)
    {
        this.runDir = runDir;
        this.vae = vae;
        this.ownsVae = ownsVae;
        Config = train.Validate();
        if (Config.TokenCache is { } cache)
        {
            // Checked now rather than after minutes of tokenizing, when the cache is first written.
            var full = Path.GetFullPath(cache);
            PathErrors.CheckOutput(full);
            if (File.Exists(full)) throw new VarSharpException($"Token cache folder {full} is a file, not a folder.");
            ModelBundle.CheckOutsideBundles(full, "Token cache folder");
        }
        modelConfig.Validate();
        ModelFolder.CheckCompatible(modelConfig, vae.Config);
        if (train.Progressive > 0 && train.ProgressiveStart >= modelConfig.NumScales)
            throw new VarSharpException($"progressive_start is {train.ProgressiveStart} but the model's scales are numbered 0 to {modelConfig.NumScales - 1}.");
        this.data = data ?? OpenData(vae.Config, train);
        CheckData(this.data, vae.Config, modelConfig, train);
        vae.eval();
        foreach (var p in vae.parameters()) p.requires_grad = false;
        tokenizerDigest = TokenPyramids.Digest(vae);
        device = vae.Device;
        model = TrainDevice.Create(() => new VarModel(modelConfig), m =>
        {
            using var initGenerator = new Generator(RunFolder.StreamSeed(train.Seed, InitStream));
            m.InitWeights(initGenerator, train.InitAdaln, train.InitAdalnGamma, train.InitHead, train.InitStd);
            if (initWeights is not null)
                InitialWeights.Apply(m, initWeights, "var.", train.InitResetClasses ? InitialWeights.ClassParameters : null, train.InitFrom!);
        }, device);
        try
        {
            trainStep = new VarTrainStep(model, Settings(train));
            schedule = new LrSchedule(train.Lr, train.ResolvedWarmupSteps, train.Steps, train.Decay, train.WarmupStartRatio, train.MinLrRatio);
            progressive = new ProgressiveSchedule(train.Progressive, train.ProgressiveStart, modelConfig.NumScales,
                train.ResolvedWarmupSteps, train.Steps, train.ResolvedProgressiveWarmupSteps);
            // Label dropout and drop path draw on the model's device, so the generator lives there.
            generator = new Generator(RunFolder.StreamSeed(train.Seed, TrainStream), device);
        }
        catch
        {
            trainStep?.Dispose();
            model.Dispose();
            throw;
        }
    }

    public string ConfigJson()
    {
        var root = new JsonObject
        {
            ["classes"] = new JsonArray(data.Train.ClassNames.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray()),
            ["vqvae"] = JsonSerializer.SerializeToNode(vae.Config, JsonConfig.Options),
            ["var"] = JsonNode.Parse(model.Config.ToJson()),
            [TrainBlock] = JsonSerializer.SerializeToNode(Config, JsonConfig.Options),
        };
        return root.ToJsonString(JsonConfig.Options);
    }

    /// <summary>Creates the folders, settles the data position, reloads the plot's history, opens the log.</summary>
    private void Open(DataPosition start, long? truncateLogAfter, Action? recheck = null)
    {
        runLock = RunFolder.Create(runDir, out var logPath, recheck);
        if (truncateLogAfter is { } after)
        {
            TrainLog.TruncateAfter(logPath, after);
            var lines = TrainLog.Read(logPath);
            lossHistory.AddRange(RunFolder.Series(lines, "train", "loss"));
            evalLossHistory.AddRange(RunFolder.Series(lines, "eval", "loss_mean"));
            evalAccHistory.AddRange(RunFolder.Series(lines, "eval", "acc_mean"));
        }
        int batchesPerEpoch = data.Train.Count / Config.BatchSize;
        if (start.Epoch < 0 || start.Batch < 0 || start.Batch >= batchesPerEpoch)
            throw new VarSharpException($"Data position ({start}) is outside the {batchesPerEpoch} batches per epoch of {data.Train.Description}.");
        position = start;
        if (TokenizesPerBatch) loader = new BatchLoader(data.Train, Config.BatchSize, Config.Seed, start, Config.Prefetch);
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
            ["data_position"] = position.ToString(),
            ["tokenizer"] = Config.Tokenizer,
            ["tokenizer_sha256"] = tokenizerDigest,
            ["tokens"] = TokenizesPerBatch ? "per batch (the data augments)" : UsesFlipViews ? "precomputed, both views (hflip)" : "precomputed",
            ["parameters"] = model.parameters().Sum(p => p.numel()),
            ["lr"] = Config.Lr,
            ["warmup_steps"] = Config.ResolvedWarmupSteps,
            ["progressive"] = progressive.Enabled
                ? string.Create(CultureInfo.InvariantCulture, $"{Config.Progressive} of the steps from scale {Config.ProgressiveStart}, stage warmup {Config.ResolvedProgressiveWarmupSteps:0.##} steps")
                : null,
        });
    }

    /// <summary>
    /// Trains until the configured number of steps (or <paramref name="stopAtStep"/>, or cancellation), then evaluates,
    /// samples and checkpoints where it stopped. Returns where it ended.
    /// </summary>
    public VarTrainResult Run(Action<TrainEvent>? observe = null, CancellationToken cancel = default, long? stopAtStep = null) =>
        RunFolder.Guard(() => RunSteps(observe, cancel, stopAtStep), runDir, log, () => step, () => lastCheckpoint, newRunFolder, () =>
        {
            loader?.Dispose();
            log.Dispose();
        });

    private VarTrainResult RunSteps(Action<TrainEvent>? observe, CancellationToken cancel, long? stopAtStep)
    {
        long end = Math.Min(Config.Steps, stopAtStep ?? long.MaxValue);
        var issues = data.Train.Issues;
        if (issues.SkippedAtScan > 0) Say(observe, $"data: {issues}");
        var clock = Stopwatch.StartNew();
        bool prepared = step >= end || PrepareTokens(observe, cancel);
        long sessionStart = step;
        var stepClock = Stopwatch.StartNew();
        double wLoss = 0, wLm = 0, wLt = 0, wAm = 0, wAt = 0, wGrad = 0;
        int wSteps = 0, wTailSteps = 0;
        var windowClock = Stopwatch.StartNew();
        while (prepared && step < end && !cancel.IsCancellationRequested)
        {
            using var scope = NewDisposeScope();
            var (labels, gt_BL, at) = NextBatch();
            var x = VarInput(gt_BL);
            double lr = schedule.At(step);
            var stage = progressive.At(step);
            using var r = trainStep.Step(labels, x, gt_BL, generator, lr: lr, measureGradNorms: false, measureMetrics: true,
                microBatches: Config.GradAccum, progressive: stage);
            step++;

            if (!double.IsFinite(r.Loss))
                throw new VarSharpException($"The loss became {r.Loss} at step {step}; lower the learning rate (--tblr) or check the data.");
            var m = r.Metrics!.Value;
            lastTrain = m;
            wLoss += r.Loss;
            wLm += m.LossMean;
            wAm += m.AccMean;
            // Progressive stages have no tail (the last scale is not in the sequence).
            if (double.IsFinite(m.LossTail))
            {
                wLt += m.LossTail;
                wAt += m.AccTail;
                wTailSteps++;
            }
            wGrad += r.GradNorm;
            wSteps++;
            double rate = (step - sessionStart) / Math.Max(stepClock.Elapsed.TotalSeconds, 1e-9);
            observe?.Invoke(new VarStepEvent(step, Config.Steps, r.Loss, m.AccMean, lr, rate, stage));

            if (step % Config.LogEvery == 0 || step == end)
            {
                double windowRate = wSteps / Math.Max(windowClock.Elapsed.TotalSeconds, 1e-9);
                log.Write("train", step, new Dictionary<string, JsonNode?>
                {
                    ["epoch"] = at.Epoch,
                    ["lr"] = lr,
                    ["loss"] = TrainLog.Number(wLoss / wSteps),
                    ["loss_mean"] = TrainLog.Number(wLm / wSteps),
                    ["loss_tail"] = wTailSteps > 0 ? TrainLog.Number(wLt / wTailSteps) : null,
                    ["acc_mean"] = TrainLog.Number(wAm / wSteps),
                    ["acc_tail"] = wTailSteps > 0 ? TrainLog.Number(wAt / wTailSteps) : null,
                    ["grad_norm"] = TrainLog.Number(wGrad / wSteps),
                    // Progressive training: the last scale in the sequence and its loss weight at the window's last step.
                    ["prog_scale"] = progressive.Enabled ? stage.LastScale : null,
                    ["prog_weight"] = progressive.Enabled ? TrainLog.Number(stage.NewestWeight) : null,
                    ["steps_per_s"] = TrainLog.Number(windowRate),
                    ["images_per_s"] = TrainLog.Number(windowRate * Config.BatchSize),
                    ["elapsed_s"] = TrainLog.Number(clock.Elapsed.TotalSeconds),
                });
                lossHistory.Add((step, wLoss / wSteps));
                wLoss = wLm = wLt = wAm = wAt = wGrad = 0;
                wSteps = wTailSteps = 0;
                windowClock.Restart();
            }
            // Evaluation, sampling and checkpoints are left out of the measured training rate.
            windowClock.Stop();
            stepClock.Stop();
            bool last = step == Config.Steps;
            if (evalTokens is not null && ((Config.EvalEvery > 0 && step % Config.EvalEvery == 0) || last)) Evaluate(observe);
            if (Config.SampleClasses > 0 && ((Config.SampleEvery > 0 && step % Config.SampleEvery == 0) || last)) SampleGrid(observe);
            if ((Config.CheckpointEvery > 0 && step % Config.CheckpointEvery == 0) || last) Checkpoint(observe);
            windowClock.Start();
            stepClock.Start();
        }
        if (step != lastCheckpointStep) Checkpoint(observe);
        bool finished = step >= Config.Steps;
        log.Write("end", step, new Dictionary<string, JsonNode?>
        {
            ["finished"] = finished,
            ["checkpoint"] = lastCheckpoint,
            ["data_issues"] = issues.ToString(),
            ["elapsed_s"] = TrainLog.Number(clock.Elapsed.TotalSeconds),
        });
        WritePlot();
        return new VarTrainResult(step, finished, lastCheckpoint, lastEval, lastTrain);
    }

    private void WritePlot() => RunFolder.TryPlot(log, step, () =>
        LossPlot.Write(Path.Combine(runDir, PlotFile),
            $"VAR {Path.GetFileName(runDir)}: depth {model.Config.Depth}, width {model.Config.EmbedDim}, V={model.Config.VocabSize}",
            [new PlotSeries("train loss (log10)", lossHistory), new PlotSeries("held-out loss (log10)", evalLossHistory, Line: false)], "log10 loss",
            [new PlotSeries("held-out token accuracy (%)", evalAccHistory, Line: false)], "accuracy %"));

    private void Say(Action<TrainEvent>? observe, string text) => observe?.Invoke(new MessageEvent(step, text));

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    public void Dispose()
    {
        loader?.Dispose();
        log?.Dispose();
        runLock?.Dispose();
        trainTokens?.Dispose();
        trainTokensMirrored?.Dispose();
        evalTokens?.Dispose();
        trainStep?.Dispose();
        generator?.Dispose();
        model.Dispose();
        if (ownsVae) vae.Dispose();
    }
}
