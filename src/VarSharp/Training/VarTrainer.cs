using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Data;
using VarSharp.Sampling;
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

    /// <summary>The optimiser settings of a training config, as <see cref="VarTrainStep"/> takes them.</summary>
    public static VarTrainSettings Settings(VarTrainConfig train) => new()
    {
        Lr = train.Lr,
        WeightDecay = train.WeightDecay,
        Beta1 = train.Beta1,
        Beta2 = train.Beta2,
        Eps = train.Eps,
        GradClip = train.GradClip,
        LabelSmooth = train.LabelSmooth,
        ComputeDType = train.Precision == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32,
    };

    /// <summary>
    /// The transformer the official presets would build for a tokenizer: width 64·depth, depth heads, mlp ratio 4,
    /// attn_l2_norm, cond_drop_rate 0.1, drop_path 0.1·depth/24, V / Cvae / patch_nums from the tokenizer.
    /// </summary>
    public static VarConfig DefaultModelConfig(VqVaeConfig tokenizer, int numClasses, int depth) => new VarConfig
    {
        NumClasses = numClasses,
        Depth = depth,
        EmbedDim = 64 * depth,
        NumHeads = depth,
        MlpRatio = 4.0,
        SharedAln = false,
        AttnL2Norm = true,
        CondDropRate = 0.1,
        DropPathRate = 0.1 * depth / 24,
        PatchNums = (int[])tokenizer.VPatchNums.Clone(),
        VocabSize = tokenizer.VocabSize,
        Cvae = tokenizer.ZChannels,
    }.Validate();

    /// <summary>Loads a tokenizer from a model folder (a bundle is verified first), with a clear error when it has none.</summary>
    public static VqVae LoadTokenizer(string dir, Device? device = null)
    {
        if (string.IsNullOrEmpty(dir)) throw new VarSharpException("No tokenizer given; pass the model folder of a trained tokenizer (e.g. RUN/checkpoints/step-N/model).");
        var full = Path.GetFullPath(dir);
        if (!Directory.Exists(full)) throw PathErrors.FolderMissing(full, "Tokenizer folder");
        return ModelFolder.LoadTokenizer(full, device);
    }

    /// <summary>
    /// Starts a new run in <paramref name="runDir"/> (which must not exist or be empty) on the tokenizer
    /// <paramref name="tokenizer"/>, or, when null, the one in the model folder <see cref="VarTrainConfig.Tokenizer"/>.
    /// A passed tokenizer stays the caller's (not disposed). The run computes on the tokenizer's device: a passed
    /// tokenizer's, or <paramref name="device"/> (default CPU) for one loaded here.
    /// </summary>
    /// <param name="initTrust">With <see cref="VarTrainConfig.InitFrom"/>: only a bundle signed by one of these keys is taken.</param>
    public static VarTrainer Start(string runDir, VarConfig model, VarTrainConfig train, VqVae? tokenizer = null, TrainingData? data = null,
        Device? device = null, BundleTrust? initTrust = null)
    {
        if (tokenizer is not null && device is not null && !TrainDevice.Same(tokenizer.Device, device))
            throw new VarSharpException($"The tokenizer lives on {tokenizer.Device} but the run was asked to train on {device}; load it there.");
        runDir = RunFolder.ForNewRun(runDir);
        bool existed = Directory.Exists(runDir);
        // Warmups are fixed when a run starts, so that a resume with other --steps keeps them.
        train = train.Validate() with
        {
            WarmupSteps = train.ResolvedWarmupSteps,
            ProgressiveWarmupSteps = train.Progressive > 0 ? train.ResolvedProgressiveWarmupSteps : train.ProgressiveWarmupSteps,
        };
        if (tokenizer is null) train = train with { Tokenizer = Path.GetFullPath(train.Tokenizer) };
        var vae = tokenizer ?? LoadTokenizer(train.Tokenizer, device);
        VarTrainer? t = null;
        ModelFiles? init = null;
        try
        {
            if (train.InitFrom is { } from)
            {
                init = ModelFiles.Read(Path.GetFullPath(from), name => ModelFolder.IsTransformerKey(name) || ModelFolder.IsTokenizerKey(name), initTrust);
                train = InitRecord(train with { InitFrom = Path.GetFullPath(from) }, init, model, TokenPyramids.Digest(vae));
            }
            t = new VarTrainer(runDir, model, train, vae, ownsVae: tokenizer is null, data, init?.Weights) { newRunFolder = existed };
            t.Open(new DataPosition(0, 0), truncateLogAfter: null, recheck: () => RunFolder.ForNewRun(runDir));
            CheckpointWriter.WriteText(Path.Combine(runDir, RunConfigFile), t.ConfigJson());
            t.LogStart(resumedFrom: null);
            return t;
        }
        catch (Exception e)
        {
            if (t is not null)
            {
                t.Dispose();
                // Losing the race for a new folder to another trainer must not delete what that trainer writes.
                if (e is not RunFolderInUseException) RunFolder.Abandon(runDir, existed);
            }
            else if (tokenizer is null) vae.Dispose();
            throw;
        }
        finally
        {
            init?.Dispose();
        }
    }

    /// <summary>The config with the initial weights' digest recorded, after checking that they describe the same classes.</summary>
    private static VarTrainConfig InitRecord(VarTrainConfig train, ModelFiles init, VarConfig model, string tokenizerDigest)
    {
        // A transformer predicts the token ids of the tokenizer it was trained with; with another codebook its weights mean
        // nothing. A folder that carries its tokenizer says which one that was.
        var initTokenizer = init.Weights.Where(kv => ModelFolder.IsTokenizerKey(kv.Key)).Select(kv => KeyValuePair.Create(kv.Key["vae.".Length..], kv.Value)).ToList();
        if (initTokenizer.Count > 0 && TokenPyramids.Digest(initTokenizer) != tokenizerDigest)
            throw new VarSharpException(
                $"The initial model in {train.InitFrom} was trained with another tokenizer than --tokenizer (their vae.* weights differ); fine-tune it on its own tokenizer (--tokenizer {train.InitFrom}).");
        if (train.InitFromSha256 is { } expected && expected != init.WeightsSha256)
            throw new VarSharpException($"The initial weights in {train.InitFrom} have SHA-256 {init.WeightsSha256} but the config records {expected}.");
        var initConfig = ModelFolder.ReadVarConfig(init.Config, init.ConfigPath);
        if (initConfig.NumClasses != model.NumClasses && !train.InitResetClasses)
            throw new VarSharpException(
                $"The initial model in {train.InitFrom} has {initConfig.NumClasses} classes but this run trains {model.NumClasses}; pass --init-reset-classes to start the class embedding afresh.");
        return train with { InitFromSha256 = init.WeightsSha256 };
    }

    /// <summary>The three config blocks of a checkpoint (or of a run folder's latest checkpoint).</summary>
    public static (VqVaeConfig Tokenizer, VarConfig Model, VarTrainConfig Train, string Checkpoint) ReadCheckpointConfig(string path)
    {
        var ckpt = CheckpointWriter.Resolve(path);
        var configPath = CheckpointWriter.ConfigPath(ckpt);
        // Checked against the checkpoint bundle's manifest on the bytes that are parsed.
        using var doc = ModelFiles.ReadConfig(CheckpointWriter.ModelFolderOf(ckpt));
        var root = doc.RootElement;
        if (!root.TryGetProperty(TrainBlock, out var tr))
        {
            string what = root.TryGetProperty("train_tokenizer", out _) ? "a tokenizer training checkpoint (resume it with train-tokenizer)" : "no transformer training checkpoint";
            throw new VarSharpException($"{configPath} has no '{TrainBlock}' block: {ckpt} is {what}.");
        }
        if (!root.TryGetProperty("var", out _) || !root.TryGetProperty("vqvae", out _))
            throw new VarSharpException($"{configPath} lacks the 'var' or 'vqvae' block; expected both in a transformer training checkpoint.");
        return (ModelFolder.ReadVqVaeConfig(root, configPath), ModelFolder.ReadVarConfig(root, configPath), VarTrainConfig.FromJson(tr), ckpt);
    }

    /// <summary>
    /// Continues a run from a checkpoint (or a run folder's latest). The requested configs must equal the stored ones
    /// except for <see cref="VarTrainConfig.ChangeableOnResume"/>; otherwise a <see cref="VarSharpException"/> is thrown
    /// before anything is written. The tokenizer is the checkpoint's own copy (`vae.*`); a tokenizer folder given in
    /// <paramref name="tokenizer"/> must hold the same config and the same weights. Output continues in the run folder
    /// holding the checkpoint, or in <paramref name="newRunDir"/> (new or empty).
    /// </summary>
    public static VarTrainer Resume(string path, VarConfig? model = null, VarTrainConfig? train = null, string? tokenizer = null,
        string? newRunDir = null, TrainingData? data = null, Device? device = null)
    {
        device ??= CPU;
        var (storedTokenizer, storedModel, storedTrain, ckpt) = ReadCheckpointConfig(path);
        model ??= storedModel;
        train ??= storedTrain;
        RunFolder.CheckResumeConfigs(ckpt, "transformer", model, storedModel, train, storedTrain, VarTrainConfig.ChangeableOnResume, VarConfig.JsonOptions);

        string runDir = CheckpointWriter.ResumeRunDir(ckpt, newRunDir);
        string source = CheckpointWriter.TrainStatePath(ckpt);
        var (state, metadata) = CheckpointWriter.LoadTrainState(ckpt, StateFormat, "transformer", out var note);
        var storedDigest = metadata.GetValueOrDefault("tokenizer_sha256");
        VqVae? vae = null;
        VarTrainer? t = null;
        try
        {
            TrainDevice.CheckResume(metadata, device, ckpt);
            // The tokenizer: the checkpoint's own copy, or a folder that must hold the same one.
            if (tokenizer is not null)
            {
                var folder = Path.GetFullPath(tokenizer);
                // Compared as loaded (verified), not as a separate read of its config.
                vae = LoadTokenizer(folder, device);
                if (!vae.Config.Equals(storedTokenizer))
                {
                    var (name, ours, theirs) = JsonConfig.Differences(vae.Config, storedTokenizer).FirstOrDefault(("config", "another", "its own"));
                    throw new VarSharpException(
                        $"The tokenizer in {folder} has {name} {ours} but the checkpoint {ckpt} was trained on a tokenizer with {theirs}; resume with the tokenizer it was trained on (or without --tokenizer).");
                }
                var digest = TokenPyramids.Digest(vae);
                if (storedDigest is not null && digest != storedDigest)
                    throw new VarSharpException(
                        $"The tokenizer in {folder} has the checkpoint's config but other weights (SHA-256 {digest[..16]}… instead of {storedDigest[..16]}…); the tokens would change, so the run cannot continue on it.");
            }
            else vae = ModelFolder.LoadTokenizer(CheckpointWriter.ModelFolderOf(ckpt), device);

            long stateStep = CheckpointWriter.Scalar(state, "step", source);
            void CheckPoint()
            {
                // Continuing into a new folder needs it unused, like a new run; in place, no later checkpoint there.
                if (newRunDir is not null) RunFolder.ForNewRun(runDir);
                RunFolder.CheckResumePoint(runDir, ckpt, stateStep, train.Steps, inPlace: newRunDir is null);
            }
            CheckPoint();

            t = new VarTrainer(runDir, model, train, vae, ownsVae: true, data);
            vae = null;   // the trainer owns it now
            if (storedDigest is not null && t.tokenizerDigest != storedDigest)
                throw new VarSharpException($"The tokenizer weights in {ckpt} do not match the digest its train state records; the checkpoint was altered.");
            var (ckptStep, position) = RunFolder.ReadProgress(state, source, ckpt, t.data.Train);
            t.LoadState(ckpt, state, source);
            t.step = ckptStep;
            t.Open(position, truncateLogAfter: newRunDir is null ? t.step : null, recheck: CheckPoint);
            CheckpointWriter.WriteText(Path.Combine(runDir, RunConfigFile), t.ConfigJson());
            t.lastCheckpointStep = t.step;
            t.lastCheckpoint = ckpt;
            t.LogStart(resumedFrom: ckpt, note);
            return t;
        }
        catch
        {
            t?.Dispose();
            vae?.Dispose();
            throw;
        }
        finally
        {
            foreach (var v in state.Values) v.Dispose();
        }
    }

    private void LoadState(string ckpt, Dictionary<string, Tensor> state, string source)
    {
        // The checkpoint holds float32 weights: under mixed precision exactly into the masters, rounded into the model.
        CheckpointWriter.LoadModelWeights(ckpt, weights => trainStep.LoadFullPrecision(weights, "var."));
        trainStep.Optimizer.LoadState(state, source);
        if (!state.TryGetValue("rng.train", out var rng)) throw new VarSharpException($"{source} lacks 'rng.train'; expected the training generator's state.");
        generator.set_state(rng);
    }

    /// <summary>Opens the training split (and the held-out split when eval_images &gt; 0) shaped for the tokenizer.</summary>
    public static TrainingData OpenData(VqVaeConfig tokenizer, VarTrainConfig train)
    {
        var options = new ImageFolderOptions(train.Resize, train.Hflip, train.Strict);
        var trainSet = Datasets.Open(train.Data, DataSplit.Train, tokenizer.InChannels, tokenizer.ImageSize, options);
        var evalSet = train.EvalImages > 0 ? Datasets.Open(train.Data, DataSplit.Test, tokenizer.InChannels, tokenizer.ImageSize, options) : null;
        return new TrainingData(trainSet, evalSet);
    }

    private static void CheckData(TrainingData data, VqVaeConfig tokenizer, VarConfig model, VarTrainConfig train)
    {
        foreach (var set in new[] { data.Train, data.Eval })
        {
            if (set is null) continue;
            if (set.Channels != tokenizer.InChannels || set.ImageSize != tokenizer.ImageSize)
                throw new VarSharpException(
                    $"{set.Description} yields {set.Channels}×{set.ImageSize}×{set.ImageSize} samples but the tokenizer takes {tokenizer.InChannels}×{tokenizer.ImageSize}×{tokenizer.ImageSize}.");
        }
        if (data.Train.ClassNames.Count != model.NumClasses)
            throw new VarSharpException(
                $"{data.Train.Description} has {data.Train.ClassNames.Count} classes but the transformer is built for num_classes {model.NumClasses}.");
        if (data.Train.Count < train.BatchSize)
            throw new VarSharpException($"{data.Train.Description} has {data.Train.Count} images, fewer than one batch of {train.BatchSize}.");
    }

    /// <summary>The bundle's config.json: the dataset's class names (for pickers and grids), vqvae + var + train_var blocks.</summary>
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

    /// <summary>Teacher-forcing metrics (eval mode, no label dropout) over the held-out images, weighted per image.</summary>
    public VarEvalEvent Evaluate(Action<TrainEvent>? observe = null)
    {
        if (evalTokens is null && !PrepareTokens(observe)) throw new OperationCanceledException();
        var set = evalTokens ?? throw new VarSharpException("This run has no held-out images to evaluate on (eval_images is 0).");
        bool wasTraining = model.training;
        model.eval();
        var clock = Stopwatch.StartNew();
        try
        {
            double lm = 0, lt = 0, am = 0, at = 0;
            int n = set.Count, lastL = model.Config.PatchNums[^1] * model.Config.PatchNums[^1];
            for (int start = 0; start < n; start += Config.BatchSize)
            {
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                int b = Math.Min(Config.BatchSize, n - start);
                var (labels, gt_BL) = set.Gather(Enumerable.Range(start, b).ToArray(), device);
                var logits = model.Forward(labels, VarInput(gt_BL));
                var m = VarTokenMetrics.Of(logits, gt_BL, lastL);
                lm += m.LossMean * b;
                lt += m.LossTail * b;
                am += m.AccMean * b;
                at += m.AccTail * b;
            }
            var metrics = new VarTokenMetrics(lm / n, lt / n, am / n, at / n);
            log.Write("eval", step, new Dictionary<string, JsonNode?>
            {
                ["loss_mean"] = TrainLog.Number(metrics.LossMean),
                ["loss_tail"] = TrainLog.Number(metrics.LossTail),
                ["acc_mean"] = TrainLog.Number(metrics.AccMean),
                ["acc_tail"] = TrainLog.Number(metrics.AccTail),
                ["eval_images"] = n,
                ["seconds"] = TrainLog.Number(clock.Elapsed.TotalSeconds),
            });
            evalLossHistory.Add((step, metrics.LossMean));
            evalAccHistory.Add((step, metrics.AccMean));
            lastEval = metrics;
            var e = new VarEvalEvent(step, metrics, n);
            observe?.Invoke(e);
            WritePlot();
            return e;
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary>
    /// Samples the grid: the first sample_classes classes, two images each (seeds sample_seed + i), guidance
    /// sample_cfg; one column per class. The trainer's generator is not touched, so sampling never changes training.
    /// </summary>
    public string SampleGrid(Action<TrainEvent>? observe = null)
    {
        int k = Math.Min(Config.SampleClasses, model.Config.NumClasses);
        if (k <= 0) throw new VarSharpException("sample_classes is 0, so there is no grid to sample.");
        bool wasTraining = model.training;
        model.eval();
        var clock = Stopwatch.StartNew();
        try
        {
            using var pipe = new VarPipeline(vae, model);
            var images = pipe.Generate(new SampleOptions
            {
                Classes = Enumerable.Range(0, k).ToArray(),
                Count = 2,
                Cfg = Config.SampleCfg,
                Seed = Config.SampleSeed,
                BatchSize = 2 * k,
            });
            // Generate returns class-major (0,0,1,1,…); the grid shows the first image of every class, then the second.
            var rows = images.Where((_, i) => i % 2 == 0).Concat(images.Where((_, i) => i % 2 == 1)).ToList();
            var path = Path.Combine(runDir, SamplesDir, $"step-{step:D7}.png");
            ImageIO.WriteAtomically(path, VarPipeline.GridPng(rows, columns: k));
            log.Write("sample", step, new Dictionary<string, JsonNode?>
            {
                ["grid"] = path,
                ["classes"] = k,
                ["cfg"] = Config.SampleCfg,
                ["seed"] = Config.SampleSeed,
                ["seconds"] = TrainLog.Number(clock.Elapsed.TotalSeconds),
            });
            observe?.Invoke(new SampleGridEvent(step, path));
            return path;
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary>Writes a checkpoint for the current step and prunes old ones beyond keep_checkpoints.</summary>
    public string Checkpoint(Action<TrainEvent>? observe = null)
    {
        var dir = CheckpointWriter.StepDir(runDir, step);
        using (var scope = NewDisposeScope())
        {
            var weights = vae.state_dict().Select(kv => KeyValuePair.Create("vae." + kv.Key, kv.Value))
                .Concat(trainStep.FullPrecisionState().Select(kv => KeyValuePair.Create("var." + kv.Key, kv.Value))).ToList();
            var state = RunFolder.ProgressState(step, position, data.Train);
            state.Add(new("rng.train", generator.get_state()));
            state.AddRange(trainStep.Optimizer.StateTensors());
            CheckpointWriter.Write(dir, ConfigJson(), weights, state, new Dictionary<string, string>
            {
                ["format"] = StateFormat,
                ["step"] = step.ToString(CultureInfo.InvariantCulture),
                ["tokenizer_sha256"] = tokenizerDigest,
                [TrainDevice.MetadataKey] = TrainDevice.Name(device),
                [CheckpointWriter.ThreadsKey] = torch.get_num_threads().ToString(CultureInfo.InvariantCulture),
            }, producer: "varsharp train");
        }
        lastCheckpointStep = step;
        lastCheckpoint = dir;
        RunFolder.Prune(runDir, Config.KeepCheckpoints, dir);
        log.Write("checkpoint", step, new Dictionary<string, JsonNode?> { ["dir"] = dir, ["data_position"] = position.ToString() });
        Say(observe, $"step {step}: checkpoint {dir}");
        return dir;
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
