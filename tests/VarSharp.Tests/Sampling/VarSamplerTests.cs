using VarSharp.Config;
using VarSharp.Sampling;
using VarSharp.Tests.Support;
using VarSharp.Tests.Transformer;
using VarSharp.Tokenizer;
using VarSharp.Transformer;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Sampling;

/// <summary>Sampling invariants on a tiny random tokenizer + transformer (no shared data needed).</summary>
public sealed class VarSamplerTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly VqVae _vae;
    private readonly VarModel _model;
    private readonly VarSampler _sampler;

    public VarSamplerTests(ITestOutputHelper output)
    {
        _output = output;
        (_vae, _model) = TinyModels.Create();
        _sampler = new VarSampler(_model, _vae);
    }

    public void Dispose()
    {
        _model.Dispose();
        _vae.Dispose();
    }

    private static SamplerSettings Settings(double cfg = 2.5, int topK = 0, double topP = 0.9, bool smooth = false) =>
        new() { Cfg = cfg, TopK = topK, TopP = topP, MoreSmooth = smooth };

    private static long[] Ints(Tensor t) => t.data<long>().ToArray();

    [Fact]
    public void SamplingWithoutTheCacheDrawsTheSameTokensFromTheSameLogits()
    {
        using var scope = NewDisposeScope();
        var recompute = new VarSampler(_model, _vae) { UseKvCache = false };
        _model.train();   // the recompute path must not draw label dropout or drop path, whatever the model's mode
        try
        {
            using var a = _sampler.Sample([2, 4, 1, 1], Settings(topK: 6), SampleRng.PerSampleFrom(3, 4), SampleExtras.Logits);
            using var b = recompute.Sample([2, 4, 1, 1], Settings(topK: 6), SampleRng.PerSampleFrom(3, 4), SampleExtras.Logits);
            double err = TensorAssert.Close(a.LogitsRaw!, b.LogitsRaw!, 1e-5, "KV-cache logits vs recomputed logits");
            _output.WriteLine($"max |logit difference| {err:g3}");
            Assert.Equal(Ints(a.TokensBL()), Ints(b.TokensBL()));
            Assert.Equal(0.0, TensorAssert.MaxAbsDiff(a.Images, b.Images));
            Assert.True(_model.training, "the sampler must give the model back in the mode it found it");
        }
        finally
        {
            _model.eval();
        }
    }

    [Fact]
    public void KvCachedSamplingEqualsTeacherForcingOnItsOwnTokens()
    {
        using var scope = NewDisposeScope();
        var cfg = _model.Config;
        using var r = _sampler.Sample([1, 4, 0], Settings(), SampleRng.Shared(21), SampleExtras.Logits);
        long B = 3;

        // Teacher forcing on the sampled pyramid, with the same doubled batch (rows [B:] unconditional).
        var x = _vae.IndicesToVarInput(r.Tokens);
        var labels2 = tensor(new long[] { 1, 4, 0, cfg.NumClasses, cfg.NumClasses, cfg.NumClasses });
        var full = _model.Forward(labels2, x.repeat(2, 1, 1));
        double err = TensorAssert.Close(r.LogitsRaw!, full, 1e-5, "KV-cache logits vs teacher forcing");

        // The guidance mix of every scale: (1+t)·cond − t·uncond with t = cfg·si/(S−1).
        foreach (var (si, (bg, ed)) in cfg.BeginEnds.Select((be, si) => (si, be)))
        {
            double t = 2.5 * si / (cfg.NumScales - 1);
            var raw = r.LogitsRaw!.narrow(1, bg, ed - bg);
            var mixed = raw.narrow(0, 0, B).mul(1 + t).sub(raw.narrow(0, B, B).mul(t));
            Assert.Equal(0.0, TensorAssert.MaxAbsDiff(r.LogitsCfg!.narrow(1, bg, ed - bg), mixed));
        }

        // The decoded image is the tokenizer's decoding of the same tokens, mapped to [0, 1].
        var decoded = _vae.IndicesToImage(r.Tokens).add(1).mul(0.5);
        TensorAssert.Close(r.Images, decoded, 1e-5, "image vs decoding the sampled tokens");
        Assert.Equal(new long[] { 3, 3, 8, 8 }, r.Images.shape);
        Assert.True(r.Images.min().item<float>() >= 0 && r.Images.max().item<float>() <= 1);
        _output.WriteLine($"KV-cache vs teacher forcing max|Δ| {err:g3}");
    }

    [Fact]
    public void WithPerSampleSeedsASampleDoesNotDependOnItsBatchMates()
    {
        var s = Settings();
        using var batch = _sampler.Sample([1, 2, 3], s, SampleRng.PerSampleFrom(10, 3));
        using var alone = _sampler.Sample([2], s, SampleRng.PerSample(11));
        using var other = _sampler.Sample([4, 2], s, SampleRng.PerSample(99, 11));
        for (int si = 0; si < batch.Tokens.Count; si++)
        {
            Assert.Equal(Ints(alone.Tokens[si][0]), Ints(batch.Tokens[si][1]));
            Assert.Equal(Ints(alone.Tokens[si][0]), Ints(other.Tokens[si][1]));
        }
        TensorAssert.Close(batch.Images[1], alone.Images[0], 1e-5, "row 1 of the batch vs sampled alone");
        TensorAssert.Close(other.Images[1], alone.Images[0], 1e-5, "row 1 of another batch vs sampled alone");
    }

    [Fact]
    public void APerSampleRowEqualsASharedRunOfOneWithTheSameSeed()
    {
        var s = Settings(smooth: true);
        using var a = _sampler.SampleRandomClasses(1, s, SampleRng.PerSample(5));
        using var b = _sampler.SampleRandomClasses(1, s, SampleRng.Shared(5));
        Assert.Equal(a.Labels, b.Labels);
        Assert.Equal(Ints(a.TokensBL()), Ints(b.TokensBL()));
        Assert.Equal(0.0, TensorAssert.MaxAbsDiff(a.Images, b.Images));
    }

    [Fact]
    public void SameSeedSameResultDifferentSeedDifferentTokens()
    {
        var s = Settings(topK: 8);
        using var a = _sampler.Sample([0, 3], s, SampleRng.Shared(1));
        using var b = _sampler.Sample([0, 3], s, SampleRng.Shared(1));
        using var c = _sampler.Sample([0, 3], s, SampleRng.Shared(2));
        Assert.Equal(Ints(a.TokensBL()), Ints(b.TokensBL()));
        Assert.Equal(0.0, TensorAssert.MaxAbsDiff(a.Images, b.Images));
        Assert.NotEqual(Ints(a.TokensBL()), Ints(c.TokensBL()));
    }

    [Fact]
    public void DrawnClassesAreValidAndReproducible()
    {
        var s = Settings();
        using var a = _sampler.SampleRandomClasses(12, s, SampleRng.Shared(3));
        using var b = _sampler.SampleRandomClasses(12, s, SampleRng.Shared(3));
        Assert.Equal(a.Labels, b.Labels);
        Assert.All(a.Labels, l => Assert.InRange(l, 0, _model.Config.NumClasses - 1));
        Assert.True(a.Labels.Distinct().Count() > 1);
    }

    [Fact]
    public void ScaleImagesEndWithTheFinalImageAndMoreSmoothStaysInRange()
    {
        using var r = _sampler.Sample([2], Settings(smooth: true), SampleRng.Shared(4), SampleExtras.ScaleImages);
        Assert.Equal(new long[] { _model.Config.NumScales, 1, 3, 8, 8 }, r.ScaleImages!.shape);
        Assert.Equal(0.0, TensorAssert.MaxAbsDiff(r.ScaleImages[_model.Config.NumScales - 1], r.Images));
        Assert.True(r.Images.min().item<float>() >= 0 && r.Images.max().item<float>() <= 1);
        Assert.Null(r.LogitsCfg);
    }

    [Fact]
    public void BadRequestsAreOneSentenceErrors()
    {
        var ok = Settings();
        void Throws(string expected, Action act) => Assert.Contains(expected, Assert.Throws<VarSharpException>(act).Message);
        Throws("class id 6 is unknown: this model has classes 0 to 4, and 5 samples unconditionally", () => _sampler.Sample([6], ok, SampleRng.Shared(0)));
        Throws("class id -1 is unknown", () => _sampler.Sample([-1], ok, SampleRng.Shared(0)));
        Throws("cfg (guidance scale) must be a finite number ≥ 0, found -1", () => _sampler.Sample([1], ok with { Cfg = -1 }, SampleRng.Shared(0)));
        Throws("top-p must be in [0, 1]", () => _sampler.Sample([1], ok with { TopP = 1.01 }, SampleRng.Shared(0)));
        Throws("top-k must be 0 (off) or a positive number", () => _sampler.Sample([1], ok with { TopK = -2 }, SampleRng.Shared(0)));
        Throws("top-k must be at most the vocabulary size 16", () => _sampler.Sample([1], ok with { TopK = 17 }, SampleRng.Shared(0)));
        Throws("must be positive, found 0", () => _sampler.SampleRandomClasses(0, ok, SampleRng.Shared(0)));
        Throws("must be positive, found 0", () => _sampler.Sample([], ok, SampleRng.Shared(0)));
        Throws("2 images but 1 seeds", () => _sampler.Sample([1, 2], ok, SampleRng.PerSample(3)));
    }

    [Theory]
    [InlineData("vocab", "predicts 32 token ids but the tokenizer's codebook has 16 entries")]
    [InlineData("cvae", "reads latents of width 8 but the tokenizer's z_channels is 4")]
    [InlineData("scales", "patch_nums [1, 2, 4] differ from the tokenizer's v_patch_nums [1, 2, 3, 4]")]
    public void AMismatchedTokenizerIsRefused(string what, string expected)
    {
        VarConfig cfg = what switch
        {
            "vocab" => TinyModels.Var(vocab: 32),
            "cvae" => TinyModels.Var(cvae: 8),
            _ => TinyModels.Var(patchNums: [1, 2, 4]),
        };
        using var model = new VarModel(cfg);
        var e = Assert.Throws<VarSharpException>(() => new VarSampler(model, _vae));
        Assert.Contains(expected, e.Message);
    }
}
