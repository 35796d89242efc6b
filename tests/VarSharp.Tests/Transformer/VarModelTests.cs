using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Tests.Transformer;

/// <summary>Invariants on tiny random models (no shared data needed).</summary>
public class VarModelTests
{
    internal static VarConfig Tiny(bool sharedAln = false, bool l2 = true, int[]? patchNums = null) => new()
    {
        NumClasses = 5,
        Depth = 2,
        EmbedDim = 32,
        NumHeads = 2,
        SharedAln = sharedAln,
        AttnL2Norm = l2,
        CondDropRate = 0.5,
        DropPathRate = 0.3,
        PatchNums = patchNums ?? [1, 2, 3],
        VocabSize = 16,
        Cvae = 4,
    };

    private static VarModel RandomModel(VarConfig cfg, ulong seed)
    {
        var m = new VarModel(cfg);
        using var gen = new Generator(seed);
        m.InitWeights(gen);
        // Perturb the (near-)zero parts so every term matters, like the golden recipe.
        using var noGrad = no_grad();
        foreach (var (name, p) in m.named_parameters())
            if (name.EndsWith("bias") || name.Contains("ada_lin") || name.Contains("ada_gss") || name.StartsWith("head."))
                p.add_(randn(p.shape, generator: gen).mul_(0.1));
        m.eval();
        return m;
    }

    public static TheoryData<bool, bool, int[]> Variants => new()
    {
        { false, true, new[] { 1, 2, 3 } },
        { true, false, new[] { 1, 2, 4 } },
        { false, false, new[] { 2, 3, 5 } },   // first_l > 1
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void KvCacheStepsEqualTeacherForcing(bool sharedAln, bool l2, int[] patchNums)
    {
        var cfg = Tiny(sharedAln, l2, patchNums);
        using var model = RandomModel(cfg, 7);
        using var scope = NewDisposeScope();
        using var gen = new Generator(11);
        long B = 3;
        var labels = tensor(new long[] { 0, 4, cfg.NumClasses });
        var x = randn(new long[] { B, cfg.L - cfg.FirstL, cfg.Cvae }, generator: gen);
        var full = model.Forward(labels, x);
        Assert.Equal(new long[] { B, cfg.L, cfg.VocabSize }, full.shape);

        using var cache = model.NewKvCache(B);
        for (int round = 0; round < 2; round++)   // the second round reuses the buffers after Reset
        {
            for (int si = 0; si < cfg.NumScales; si++)
            {
                var (bg, ed) = cfg.BeginEnds[si];
                var step = model.StepLogits(si, labels, si == 0 ? null : x.narrow(1, bg - cfg.FirstL, ed - bg), cache);
                TensorAssert.Close(step, full.narrow(1, bg, ed - bg), 1e-5, $"scale {si}");
            }
            cache.Reset();
        }
    }

    [Fact]
    public void StepLogitsRejectsOutOfOrderScales()
    {
        using var model = RandomModel(Tiny(), 1);
        using var cache = model.NewKvCache(1);
        var ex = Assert.Throws<VarSharpException>(() => model.StepLogits(1, tensor(new long[] { 0 }), zeros(1, 4, 4), cache));
        Assert.Contains("expects scale 0", ex.Message);
    }

    [Fact]
    public void TrainingForwardDrawsOnlyFromTheGivenGenerator()
    {
        var cfg = Tiny();
        using var model = RandomModel(cfg, 3);
        using var scope = NewDisposeScope();
        var labels = tensor(new long[] { 1, 2, 3, 4 });
        var x = randn(new long[] { 4, cfg.L - cfg.FirstL, cfg.Cvae }, generator: new Generator(5));
        model.train();
        Assert.Throws<VarSharpException>(() => model.Forward(labels, x));

        Tensor Run(ulong seed) { using var gen = new Generator(seed); return model.Forward(labels, x, gen); }
        var a = Run(42);
        random.manual_seed(1);   // the global RNG must not matter
        var b = Run(42);
        Assert.Equal(0.0, TensorAssert.MaxAbsDiff(a, b));
        var c = Run(43);
        Assert.True(TensorAssert.MaxAbsDiff(a, c) > 0, "a different generator seed should change a training forward");

        model.eval();
        var e1 = model.Forward(labels, x);
        var e2 = model.Forward(labels, x);
        Assert.Equal(0.0, TensorAssert.MaxAbsDiff(e1, e2));
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void APrefixOfScalesGivesTheFirstLogitsOfTheWholeSequence(bool sharedAln, bool l2, int[] patchNums)
    {
        var cfg = Tiny(sharedAln, l2, patchNums);
        using var model = RandomModel(cfg, 9);
        using var scope = NewDisposeScope();
        var labels = tensor(new long[] { 0, 3, cfg.NumClasses });
        var x = randn(new long[] { 3, cfg.L - cfg.FirstL, cfg.Cvae }, generator: new Generator(2));
        foreach (bool training in new[] { false, true })
        {
            // Label dropout and drop path draw one number per sample, whatever the length, so one seed gives both runs
            // the same draws and the block-causal mask makes the prefix's logits those of the whole sequence.
            model.train(training);
            Tensor Forward(Tensor input) { using var gen = new Generator(17); return model.Forward(labels, input, gen); }
            var full = Forward(x);
            for (int k = 0; k < cfg.NumScales; k++)
            {
                long ed = cfg.BeginEnds[k].End;
                var part = Forward(x.narrow(1, 0, ed - cfg.FirstL));
                Assert.Equal(new long[] { 3, ed, cfg.VocabSize }, part.shape);
                TensorAssert.Close(part, full.narrow(1, 0, ed), 1e-5, $"scales 0..{k}, training {training}");
            }
        }
        model.eval();
    }

    [Fact]
    public void TheFirstScaleAloneGivesWordEmbedZeroGradientsNotNone()
    {
        // As the reference (which adds word_embed × 0 then), so that AdamW still steps and decays it in that stage.
        var cfg = Tiny() with { CondDropRate = 0, DropPathRate = 0 };
        using var model = RandomModel(cfg, 4);
        using var scope = NewDisposeScope();
        model.train();
        var logits = model.Forward(tensor(new long[] { 1, 2 }), zeros(2, 0, cfg.Cvae));
        Assert.Equal(new long[] { 2, cfg.FirstL, cfg.VocabSize }, logits.shape);
        logits.square().sum().backward();
        foreach (var name in new[] { "word_embed.weight", "word_embed.bias" })
        {
            var grad = model.named_parameters().Single(kv => kv.name == name).parameter.grad;
            Assert.NotNull(grad);
            Assert.Equal(0.0, grad!.abs().max().item<float>());
        }
        Assert.True(model.named_parameters().Single(kv => kv.name == "head.weight").parameter.grad!.abs().max().item<float>() > 0, "the other parameters must train");
        model.eval();
    }

    [Fact]
    public void TrainingWithoutRandomnessNeedsNoGeneratorAndEqualsEval()
    {
        var cfg = Tiny() with { CondDropRate = 0, DropPathRate = 0 };
        using var model = RandomModel(cfg, 3);
        using var scope = NewDisposeScope();
        var labels = tensor(new long[] { 1, 2 });
        var x = randn(new long[] { 2, cfg.L - cfg.FirstL, cfg.Cvae }, generator: new Generator(5));
        var ev = model.Forward(labels, x);
        model.train();
        var tr = model.Forward(labels, x);
        Assert.Equal(0.0, TensorAssert.MaxAbsDiff(ev, tr));
    }

    [Fact]
    public void ForwardRejectsBadInputs()
    {
        var cfg = Tiny();
        using var model = RandomModel(cfg, 3);
        var x = zeros(2, cfg.L - cfg.FirstL, cfg.Cvae);
        Assert.Contains("class labels", Assert.Throws<VarSharpException>(() => model.Forward(tensor(new long[] { 0, cfg.NumClasses + 1 }), x)).Message);
        Assert.Contains("int64", Assert.Throws<VarSharpException>(() => model.Forward(tensor(new int[] { 0, 1 }), x)).Message);
        Assert.Contains("shape", Assert.Throws<VarSharpException>(() => model.Forward(tensor(new long[] { 0, 1 }), zeros(2, 3, cfg.Cvae))).Message);
    }

    [Fact]
    public void InitWeightsFollowsTheOfficialRecipe()
    {
        var cfg = Tiny() with { Depth = 3, EmbedDim = 64, NumHeads = 4 };
        using var model = new VarModel(cfg);
        using (var gen = new Generator(9)) model.InitWeights(gen);
        var p = model.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter);
        long C = cfg.EmbedDim;
        double std = Math.Sqrt(1.0 / C / 3);

        double Std(Tensor t) => t.std().item<float>();
        Assert.InRange(Std(p["pos_1LC"]), 0.8 * std, 1.2 * std);
        Assert.InRange(Std(p["class_emb.weight"]), 0.8 * std, 1.2 * std);
        Assert.InRange(Std(p["blocks.0.ffn.fc1.weight"]), 0.9 * std, 1.1 * std);
        Assert.InRange(Std(p["blocks.0.ffn.fc2.weight"]), 0.9 * std / Math.Sqrt(6), 1.1 * std / Math.Sqrt(6));
        Assert.InRange(Std(p["head.weight"]), 0.8 * 0.02 * std, 1.2 * 0.02 * std);
        Assert.InRange(Std(p["head_nm.ada_lin.1.weight"]), 0.9 * 0.5 * std, 1.1 * 0.5 * std);
        var ada = p["blocks.1.ada_lin.1.weight"];
        Assert.InRange(Std(ada.narrow(0, 0, 2 * C)), 0.8e-5 * std, 1.2e-5 * std);
        Assert.InRange(Std(ada.narrow(0, 2 * C, 4 * C)), 0.9 * 0.5 * std, 1.1 * 0.5 * std);
        foreach (var name in new[] { "head.bias", "blocks.0.ada_lin.1.bias", "blocks.0.attn.q_bias", "blocks.2.attn.proj.bias", "word_embed.bias" })
            Assert.Equal(0.0, TensorAssert.MaxAbs(p[name]));
        Assert.Equal(Math.Log(4), p["blocks.2.attn.scale_mul_1H11"].mean().item<float>(), 5);
    }

    [Fact]
    public void SharedAlnInitScalesAdaGss()
    {
        var cfg = Tiny(sharedAln: true) with { EmbedDim = 256, NumHeads = 4 };
        using var model = new VarModel(cfg);
        using (var gen = new Generator(9)) model.InitWeights(gen);
        var gss = model.named_parameters().Single(kv => kv.name == "blocks.0.ada_gss").parameter;
        double s = 1 / Math.Sqrt(cfg.EmbedDim);
        Assert.InRange(gss.narrow(2, 2, 4).std().item<float>(), 0.85 * 0.5 * s, 1.15 * 0.5 * s);
        Assert.InRange(gss.narrow(2, 0, 2).std().item<float>(), 0.8e-5 * s, 1.2e-5 * s);
    }

    [Fact]
    public void StateDictRoundTripsThroughModuleWeights()
    {
        var cfg = Tiny(sharedAln: true);
        using var a = RandomModel(cfg, 1);
        using var b = new VarModel(cfg);
        ModuleWeights.LoadStrict(b, a.state_dict());
        b.eval();
        var labels = tensor(new long[] { 2 });
        var x = randn(new long[] { 1, cfg.L - cfg.FirstL, cfg.Cvae });
        Assert.Equal(0.0, TensorAssert.MaxAbsDiff(a.Forward(labels, x), b.Forward(labels, x)));
    }
}

/// <summary>Forward and KV-cache steps leave no live tensors behind (dispose scopes inside the model).</summary>
public class VarModelMemoryTests
{
    [Fact]
    public void RepeatedForwardAndStepsDoNotLeakTensors()
    {
        var cfg = VarModelTests.Tiny(sharedAln: true);
        using var model = new VarModel(cfg);
        using (var gen = new Generator(2)) model.InitWeights(gen);
        model.eval();
        using var labels = tensor(new long[] { 1, 2 });
        using var x = zeros(2, cfg.L - cfg.FirstL, cfg.Cvae);

        void RunOnce()
        {
            model.Forward(labels, x).Dispose();
            using var cache = model.NewKvCache(2);
            for (int si = 0; si < cfg.NumScales; si++)
            {
                var (bg, ed) = cfg.BeginEnds[si];
                using var input = si == 0 ? null : x.narrow(1, bg - cfg.FirstL, ed - bg);
                model.StepLogits(si, labels, input, cache).Dispose();
            }
        }

        RunOnce();   // warm-up
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 20; i++) RunOnce();
        long after = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Assert.True(after == before, $"live tensors grew from {before} to {after} over 20 runs");
    }
}
