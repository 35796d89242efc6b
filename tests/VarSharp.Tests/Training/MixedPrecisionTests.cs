using VarSharp.Checkpoints;
using VarSharp.Tests.Support;
using VarSharp.Training;
using VarSharp.Transformer;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Training;

/// <summary>bf16 mixed-precision training of the transformer: float32 masters, a step that tracks float32, exact resume.</summary>
public class MixedPrecisionTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ABf16StepTracksTheFloat32StepAndKeepsFloat32Masters(int microBatches)
    {
        using var scope = NewDisposeScope();
        var cfg = VarTrainerTests.Model(TinyConfigs.VqVae()) with { DropPathRate = 0, CondDropRate = 0 };
        using var a = new VarModel(cfg);
        using var b = new VarModel(cfg);
        using (var g = new Generator(3)) a.InitWeights(g);
        ModuleWeights.LoadStrict(b, a.state_dict());
        using var full = new VarTrainStep(a, new VarTrainSettings { Lr = 1e-3 });
        using var mixed = new VarTrainStep(b, new VarTrainSettings { Lr = 1e-3, ComputeDType = ScalarType.BFloat16 });
        Assert.True(mixed.MixedPrecision);
        Assert.Equal(ScalarType.BFloat16, b.DType);

        using var gen = new Generator(5);
        var idx = cfg.PatchNums.Select(pn => randint(0, cfg.VocabSize, [8, (long)pn * pn], generator: gen)).ToList();
        var gt = cat(idx, 1);
        var x = randn([8, cfg.L - cfg.FirstL, cfg.Cvae], generator: gen);
        var labels = arange(8).remainder(cfg.NumClasses);
        double firstA = 0, firstB = 0, lastA = 0, lastB = 0;
        for (int s = 0; s < 6; s++)
        {
            using var ra = full.Step(labels, x, gt, lr: 1e-3, microBatches: microBatches);
            using var rb = mixed.Step(labels, x, gt, lr: 1e-3, microBatches: microBatches);
            if (s == 0) (firstA, firstB) = (ra.Loss, rb.Loss);
            (lastA, lastB) = (ra.Loss, rb.Loss);
            Assert.True(Math.Abs(ra.GradNorm - rb.GradNorm) <= 0.05 * ra.GradNorm, $"step {s}: grad norm {rb.GradNorm} (bf16) vs {ra.GradNorm}");
        }
        output.WriteLine($"loss f32 {firstA:0.0000} → {lastA:0.0000}, bf16 {firstB:0.0000} → {lastB:0.0000}");
        Assert.True(lastB < firstB, "the bf16 run learns");
        Assert.True(Math.Abs(lastA - lastB) <= 0.02 * lastA, $"final loss bf16 {lastB} vs f32 {lastA}");

        // The checkpointed state is float32 and near the float32 run's; the model holds exactly its rounding.
        var masters = mixed.FullPrecisionState().ToDictionary(kv => kv.Key, kv => kv.Value);
        var reference = full.FullPrecisionState().ToDictionary(kv => kv.Key, kv => kv.Value);
        var model = b.state_dict();
        foreach (var (name, w) in reference)
        {
            var m = masters[name];
            Assert.Equal(w.dtype, m.dtype);
            if (!b.named_parameters().Any(p => p.name == name))
            {
                // Buffers (the causal mask's 0/−∞, level ids) pass through unchanged.
                Assert.True(m.eq(w).all().item<bool>(), $"{name}: buffer changed");
                continue;
            }
            // Adam moves every element by about lr per step whatever its gradient's size, so an element whose tiny
            // gradient differs in sign under bf16 may part from the float32 run by up to 2·lr per step.
            double scale = Math.Max(w.abs().max().item<float>(), 1e-3), adamBound = 2 * 1e-3 * 6;
            double diff = (m - w).abs().max().item<float>();
            Assert.True(diff <= 0.05 * scale + adamBound, $"{name}: masters {diff:g3} from the float32 run (max |w| {scale:g3})");
            Assert.True(model[name].to(ScalarType.Float32).eq(m.to(ScalarType.BFloat16).to(ScalarType.Float32)).all().item<bool>(), $"{name}: the model is not the masters' rounding");
        }
    }

    [Fact]
    public void ABf16RunResumesExactlyAndItsCheckpointsHoldFloat32()
    {
        using var tmp = new TempFolder();
        var (tok, data) = VarTrainerTests.Inputs(tmp);
        var cfg = VarTrainerTests.Train(tok, data, steps: 8) with { Precision = "bf16", GradAccum = 2 };
        var model = VarTrainerTests.Model(TinyConfigs.VqVae());
        VarTrainResult Run(string dir, long? stopAt = null)
        {
            using var t = VarTrainer.Start(dir, model, cfg);
            return t.Run(stopAtStep: stopAt);
        }
        var fullRun = Run(tmp.File("full"));
        Run(tmp.File("part"), stopAt: 5);
        VarTrainResult resumed;
        using (var t = VarTrainer.Resume(tmp.File("part"))) resumed = t.Run();
        int n = VarTrainerTests.AssertSameCheckpoint(fullRun.LastCheckpoint!, resumed.LastCheckpoint!);
        output.WriteLine($"{n} tensors identical after 5 + resume + 3 bf16 steps vs 8 uninterrupted");

        var weights = SafeTensors.Load(CheckpointWriter.ModelPath(fullRun.LastCheckpoint!));
        try
        {
            Assert.All(weights.Where(kv => kv.Key.StartsWith("var.", StringComparison.Ordinal) && kv.Value.is_floating_point()),
                kv => Assert.Equal(ScalarType.Float32, kv.Value.dtype));
        }
        finally
        {
            foreach (var w in weights.Values) w.Dispose();
        }

        // The precision may change on resume: the float32 masters carry over.
        VarTrainResult switched;
        using (var t = VarTrainer.Resume(CheckpointWriter.StepDir(tmp.File("part"), 6), train: cfg with { Precision = "f32", Steps = 9 }, newRunDir: tmp.File("f32")))
        {
            Assert.Equal(ScalarType.Float32, t.Model.DType);
            switched = t.Run();
        }
        Assert.True(switched.Finished);

        // And the other way: a float32 checkpoint resumed in bf16 restores its weights exactly into the masters, so a
        // checkpoint written at once holds the same float32 weights, bit for bit.
        var f32 = cfg with { Precision = "f32", GradAccum = 1 };
        using (var t = VarTrainer.Start(tmp.File("f32-run"), model, f32)) t.Run(stopAtStep: 3);
        using (var t = VarTrainer.Resume(tmp.File("f32-run"), train: f32 with { Precision = "bf16" }, newRunDir: tmp.File("to-bf16")))
        {
            Assert.Equal(ScalarType.BFloat16, t.Model.DType);
            var again = t.Checkpoint();
            var before = SafeTensors.Load(CheckpointWriter.ModelPath(CheckpointWriter.StepDir(tmp.File("f32-run"), 3)));
            var after = SafeTensors.Load(CheckpointWriter.ModelPath(again));
            try
            {
                foreach (var (name, w) in before)
                    Assert.True(w.contiguous().bytes.SequenceEqual(after[name].contiguous().bytes), $"{name} changed through a bf16 resume");
            }
            finally
            {
                foreach (var w in before.Values.Concat(after.Values)) w.Dispose();
            }
        }
    }
}
