using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Data;
using VarSharp.Tokenizer;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>Starting and resuming a run: its settings, its tokenizer, its data, and the checks that refuse a mismatch.</summary>
public sealed partial class VarTrainer
{
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
    public static TrainingData OpenData(VqVaeConfig tokenizer, VarTrainConfig train) =>
        TrainingData.Open(train.Data, new ImageFolderOptions(train.Resize, train.Hflip, train.Strict), tokenizer.InChannels, tokenizer.ImageSize, train.EvalImages);

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
}
