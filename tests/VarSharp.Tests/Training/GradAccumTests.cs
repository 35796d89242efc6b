using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Tests.Support;
using VarSharp.Tests.Transformer;
using VarSharp.Tokenizer;
using VarSharp.Training;
using VarSharp.Transformer;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Training;

/// <summary>
/// Gradient accumulation (grad_accum): a batch run in slices gives the gradients, losses and code hits of the whole
/// batch, up to float summation order. Uneven slices (6 images in 4 slices: 1, 2, 1, 2) check the share weighting.
/// </summary>
public class GradAccumTests(ITestOutputHelper output)
{
    private const int Batch = 6;

    [Fact]
    public void TransformerSlicesGiveTheWholeBatchGradients()
    {
        using var scope = NewDisposeScope();
        var (vae, trained) = TinyModels.Create();
        // No label dropout or drop path: both runs must see the same network.
        var config = trained.Config with { CondDropRate = 0, DropPathRate = 0 };
        using var whole = new VarModel(config);
        using var sliced = new VarModel(config);
        ModuleWeights.LoadStrict(whole, trained.state_dict());
        ModuleWeights.LoadStrict(sliced, trained.state_dict());

        using var gen = new Generator(11);
        var labels = randint(0, config.NumClasses, [Batch], dtype: int64, generator: gen);
        var gt_BL = randint(0, config.VocabSize, [Batch, config.L], dtype: int64, generator: gen);
        var perScale = config.PatchNums.Select(pn => (long)pn * pn).ToArray();
        Tensor x;
        using (no_grad()) x = vae.IndicesToVarInput(gt_BL.split(perScale, 1));

        using var stepWhole = new VarTrainStep(whole, new VarTrainSettings());
        using var stepSliced = new VarTrainStep(sliced, new VarTrainSettings());
        using var a = stepWhole.Step(labels, x, gt_BL, keepGradients: true, keepLogits: true, measureMetrics: true);
        using var b = stepSliced.Step(labels, x, gt_BL, keepGradients: true, keepLogits: true, measureMetrics: true, microBatches: 4);

        Assert.True(Math.Abs(a.Loss - b.Loss) <= 1e-6 * a.Loss, $"loss {b.Loss} in slices vs {a.Loss} whole");
        Assert.True(Math.Abs(a.Metrics!.Value.LossTail - b.Metrics!.Value.LossTail) <= 1e-5 * a.Metrics.Value.LossTail, "last-scale loss differs");
        TensorAssert.Close(b.Logits!, a.Logits!, 1e-5, "logits");
        double worst = 0;
        foreach (var (name, g) in a.Gradients!)
        {
            double scale = Math.Max(TensorAssert.MaxAbs(g), 1e-12), err = TensorAssert.MaxAbsDiff(b.Gradients![name], g);
            Assert.True(err <= 1e-5 * scale, $"{name}: gradient max|Δ| {err:g3} vs max|g| {scale:g3}");
            worst = Math.Max(worst, err / scale);
        }
        Assert.True(Math.Abs(a.GradNorm - b.GradNorm) <= 1e-5 * a.GradNorm, $"grad norm {b.GradNorm} vs {a.GradNorm}");
        output.WriteLine($"{a.Gradients.Count} gradients, worst relative difference {worst:g3}; loss {a.Loss:g8} vs {b.Loss:g8}");
        vae.Dispose();
        trained.Dispose();
    }

    [Fact]
    public void TransformerRefusesMoreSlicesThanImages()
    {
        var (vae, model) = TinyModels.Create();
        using (vae)
        using (model)
        using (var step = new VarTrainStep(model, new VarTrainSettings()))
        {
            using var labels = zeros([2], dtype: int64);
            using var gt = zeros([2, model.Config.L], dtype: int64);
            using var x = zeros([2, model.Config.L - 1, model.Config.Cvae]);
            var e = Assert.Throws<VarSharpException>(() => step.Step(labels, x, gt, microBatches: 3));
            Assert.Equal("A batch of 2 cannot be split into 3 micro-batches; use 1 to 2.", e.Message);
        }
        var bad = Assert.Throws<VarSharpException>(() => new VarTrainConfig { BatchSize = 4, GradAccum = 5 }.Validate());
        Assert.Contains("grad_accum must lie in [1, batch_size = 4] but is 5", bad.Message);
        bad = Assert.Throws<VarSharpException>(() => new TokenizerTrainConfig { GradAccum = 0 }.Validate());
        Assert.Contains("grad_accum must lie in [1, batch_size = 32] but is 0", bad.Message);
    }

    [Fact]
    public void TokenizerSlicesGiveTheWholeBatchGradientsAndCodeHits()
    {
        using var scope = NewDisposeScope();
        using var whole = new VqVae(TinyConfigs.VqVae());
        using var sliced = new VqVae(TinyConfigs.VqVae());
        using var gen = new Generator(5);
        using (no_grad())
            foreach (var (_, p) in whole.named_parameters()) p.copy_(randn(p.shape, generator: gen).mul_(0.2));
        ModuleWeights.LoadStrict(sliced, whole.state_dict());
        whole.train();
        sliced.train();
        int s = whole.Config.ImageSize;
        var x = rand([Batch, whole.Config.InChannels, s, s], generator: gen).mul_(2).sub_(1);

        var cfg = new TokenizerTrainConfig { BatchSize = Batch };
        var a = TokenizerTrainer.ForwardBackward(whole, x, cfg);
        var b = TokenizerTrainer.ForwardBackward(sliced, x, cfg with { GradAccum = 4 });

        Assert.True(Math.Abs(a.Loss - b.Loss) <= 1e-6 * a.Loss, $"loss {b.Loss} in slices vs {a.Loss} whole");
        Assert.True(Math.Abs(a.Rec - b.Rec) <= 1e-6 * a.Rec && Math.Abs(a.Vq - b.Vq) <= 1e-5 * a.Vq, $"rec/vq {b.Rec}/{b.Vq} vs {a.Rec}/{a.Vq}");
        var gradsB = sliced.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad);
        // Some gradients are zero but for rounding (a conv bias right before a GroupNorm): those are held to the
        // largest gradient's scale rather than their own.
        double largest = whole.parameters().Max(p => TensorAssert.MaxAbs(p.grad!));
        int compared = 0;
        foreach (var (name, p) in whole.named_parameters())
        {
            Assert.NotNull(p.grad);
            double scale = Math.Max(TensorAssert.MaxAbs(p.grad), 1e-3 * largest), err = TensorAssert.MaxAbsDiff(gradsB[name]!, p.grad);
            Assert.True(err <= 1e-5 * scale, $"{name}: gradient max|Δ| {err:g3} vs max|g| {scale:g3}");
            compared++;
        }
        // The hits of the slices add up to the batch's and enter the usage EMA once, exactly as the whole batch's.
        const string ema = "quantize.ema_vocab_hit_SV";
        Assert.True(whole.state_dict()[ema].contiguous().bytes.SequenceEqual(sliced.state_dict()[ema].contiguous().bytes), "the code-hit EMA differs");
        Assert.True(whole.state_dict()[ema].sum().item<float>() > 0, "no hits were recorded");
        output.WriteLine($"{compared} gradients within 1e-5 relative; loss {a.Loss:g8} vs {b.Loss:g8}");
    }
}
