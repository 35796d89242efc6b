using TorchSharp;
using VarSharp.Config;
using VarSharp.Tests.Support;
using VarSharp.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Tests.Training;

/// <summary>The PatchGAN discriminator and VQGAN's adversarial loss: layout, loss formulas, adaptive weight, learning.</summary>
public class AdversarialLossTests(ITestOutputHelper output)
{
    [Fact]
    public void DiscriminatorHasThePix2PixLayoutAndLogitMapSize()
    {
        using var d = new PatchDiscriminator(3, 64, 3);
        var keys = d.state_dict().Select(kv => (kv.Key, Shape: string.Join("x", kv.Value.shape))).ToList();
        // taming-transformers' NLayerDiscriminator(input_nc=3, ndf=64, n_layers=3): conv, lrelu, 3 × (conv, bn, lrelu), conv.
        var expected = new List<(string, string)> { ("main.0.weight", "64x3x4x4"), ("main.0.bias", "64") };
        foreach (var (index, from, to) in new[] { (2, 64, 128), (5, 128, 256), (8, 256, 512) })
        {
            expected.Add(($"main.{index}.weight", $"{to}x{from}x4x4"));
            foreach (var buffer in new[] { "weight", "bias", "running_mean", "running_var" }) expected.Add(($"main.{index + 1}.{buffer}", $"{to}"));
            expected.Add(($"main.{index + 1}.num_batches_tracked", ""));
        }
        expected.AddRange([("main.11.weight", "1x512x4x4"), ("main.11.bias", "1")]);
        Assert.Equal(expected.OrderBy(k => k.Item1), keys.OrderBy(k => k.Key));

        foreach (var (size, layers) in new[] { (32, 3), (32, 1), (8, 1), (64, 4), (17, 2) })
        {
            using var small = new PatchDiscriminator(1, 4, layers);
            using var logits = small.call(zeros(2, 1, size, size));
            int side = PatchDiscriminator.OutputSize(size, layers);
            Assert.Equal(new long[] { 2, 1, side, side }, logits.shape);
        }
        Assert.True(PatchDiscriminator.OutputSize(8, 2) < 1, "8×8 leaves nothing after two stride-2 layers and two 4×4 stride-1 ones");
    }

    [Fact]
    public void InitialisationFollowsVqganAndIsSeeded()
    {
        using var a = new PatchDiscriminator(1, 32, 2);
        using var b = new PatchDiscriminator(1, 32, 2);
        using (var g = new Generator(3)) a.Initialize(g);
        using (var g = new Generator(3)) b.Initialize(g);
        foreach (var ((name, x), (_, y)) in a.named_parameters().Zip(b.named_parameters()))
            Assert.True(x.contiguous().bytes.SequenceEqual(y.contiguous().bytes), $"{name} differs between two inits with one seed");
        var p = a.named_parameters().ToDictionary(n => n.name, n => n.parameter);
        // main.2 is a convolution (N(0, 0.02)), main.3 its BatchNorm (N(1, 0.02), bias 0).
        Assert.InRange(p["main.2.weight"].std().item<float>(), 0.018, 0.022);
        Assert.InRange(p["main.2.weight"].mean().item<float>(), -0.002, 0.002);
        Assert.InRange(p["main.3.weight"].mean().item<float>(), 0.99, 1.01);
        Assert.Equal(0, p["main.3.bias"].abs().max().item<float>());
    }

    private static AdversarialLoss Make(TokenizerTrainConfig cfg) => new(cfg, 1, CPU);

    [Theory]
    [InlineData("hinge")]
    [InlineData("vanilla")]
    public void DiscriminatorLossIsTheHingeOrSoftplusMeanOfItsLogits(string kind)
    {
        using var scope = NewDisposeScope();
        using var adv = Make(new TokenizerTrainConfig { DiscWeight = 1, DiscLoss = kind, DiscLayers = 1, DiscChannels = 8, Seed = 1 });
        using var gen = new Generator(4);
        var real = rand([3, 1, 8, 8], generator: gen).mul_(2).sub_(1);
        var fake = rand([3, 1, 8, 8], generator: gen).mul_(2).sub_(1);
        var (loss, meanReal, meanFake) = adv.DiscriminatorLoss(real, fake);
        // Train-mode BatchNorm normalises with the batch's own statistics, so the same call again gives the same logits.
        float[] lr = adv.Discriminator.call(real).data<float>().ToArray(), lf = adv.Discriminator.call(fake).data<float>().ToArray();
        static double Softplus(double v) => Math.Log(1 + Math.Exp(v));
        double expected = kind == "hinge"
            ? 0.5 * (lr.Average(v => Math.Max(0, 1 - v)) + lf.Average(v => Math.Max(0, 1 + v)))
            : 0.5 * (lr.Average(v => Softplus(-v)) + lf.Average(v => Softplus(v)));
        Assert.Equal(expected, loss.item<float>(), 5);
        Assert.Equal(lr.Average(v => (double)v), meanReal, 5);
        Assert.Equal(lf.Average(v => (double)v), meanFake, 5);
    }

    [Fact]
    public void AdaptiveWeightIsTheRatioOfGradientNormsAtTheLastLayer()
    {
        using var scope = NewDisposeScope();
        const double discWeight = 0.75;
        using var adv = Make(new TokenizerTrainConfig { DiscWeight = discWeight, DiscLayers = 1, DiscChannels = 8, Seed = 2 });
        using var gen = new Generator(9);
        // A stand-in for the decoder: one convolution whose weight plays the last layer.
        using var last = nn.Conv2d(4, 1, 3, padding: 1);
        var h = randn([2, 4, 8, 8], generator: gen);
        var target = rand([2, 1, 8, 8], generator: gen);

        Tensor Forward() => last.call(h);
        var recon = Forward();
        var rec = F.l1_loss(recon, target);
        var (weighted, raw, weight) = adv.GeneratorTerm(recon, rec, last.weight!);

        // The same quantities by plain backward passes.
        double NormOfGrad(Func<Tensor> loss)
        {
            last.zero_grad();
            loss().backward();
            return last.weight!.grad!.norm().item<float>();
        }
        double recNorm = NormOfGrad(() => F.l1_loss(Forward(), target));
        double gNorm = NormOfGrad(() => adv.Discriminator.call(Forward()).mean().neg());
        foreach (var p in adv.Discriminator.parameters()) p.grad = null;
        double expected = discWeight * Math.Clamp(recNorm / (gNorm + 1e-4), 0, 1e4);
        Assert.True(Math.Abs(weight - expected) <= 1e-5 * expected, $"adaptive weight {weight} vs {expected}");
        Assert.Equal(raw * weight, weighted.item<float>(), 4);

        // The generator term trains the generator only.
        last.zero_grad();
        weighted.backward();
        Assert.NotNull(last.weight!.grad);
        Assert.All(adv.Discriminator.parameters(), p => Assert.Null(p.grad));
        Assert.All(adv.Discriminator.parameters(), p => Assert.True(p.requires_grad));
        output.WriteLine($"‖∇rec‖ {recNorm:g4}, ‖∇G‖ {gNorm:g4}, weight {weight:g6}");

        using var fixedWeight = Make(new TokenizerTrainConfig { DiscWeight = discWeight, DiscAdaptive = false, DiscLayers = 1, DiscChannels = 8 });
        var recon2 = Forward();
        Assert.Equal(discWeight, fixedWeight.GeneratorTerm(recon2, F.l1_loss(recon2, target), last.weight!).Weight);
    }

    [Fact]
    public void TheDiscriminatorLearnsToTellRealFromFake()
    {
        using var scope = NewDisposeScope();
        using var adv = Make(new TokenizerTrainConfig { DiscWeight = 1, DiscLayers = 1, DiscChannels = 8, Lr = 1e-3, Seed = 3 });
        using var gen = new Generator(11);
        // Real: smooth vertical gradients; fake: noise.
        var ramp = linspace(-1, 1, 8).view(1, 1, 8, 1).expand(8, 1, 8, 8);
        var real = ramp.mul(rand([8, 1, 1, 1], generator: gen)).contiguous();
        var fake = rand([8, 1, 8, 8], generator: gen).mul_(2).sub_(1);
        var slices = new[] { (real.slice(0, 0, 4, 1), fake.slice(0, 0, 4, 1)), (real.slice(0, 4, 8, 1), fake.slice(0, 4, 8, 1)) };
        var first = adv.Step(slices, 1e-3);
        (double Loss, double Real, double Fake) last = first;
        for (int i = 0; i < 40; i++) last = adv.Step(slices, 1e-3);
        output.WriteLine($"d_loss {first.Loss:0.000} → {last.Loss:0.000}; logits real {last.Real:0.00}, fake {last.Fake:0.00}");
        Assert.True(last.Loss < 0.5 * first.Loss, $"d_loss went from {first.Loss} to {last.Loss}");
        Assert.True(last.Real > last.Fake, "real images should score above fakes");
    }
}
