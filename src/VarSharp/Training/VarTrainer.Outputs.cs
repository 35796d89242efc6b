using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using TorchSharp;
using VarSharp.Data;
using VarSharp.Sampling;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>What a run writes besides its steps: held-out evaluation, sample grids and checkpoints.</summary>
public sealed partial class VarTrainer
{
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
        RunFolder.Checkpointed(log, runDir, Config.KeepCheckpoints, step, dir, position);
        Say(observe, $"step {step}: checkpoint {dir}");
        return dir;
    }
}
