using VarSharp.Sampling;
using VarSharp.Tests.Support;
using VarSharp.Tokenizer;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Tests.Sampling;

/// <summary>Zero-shot editing: the image's tokens are teacher-forced where it is known, everything else is sampled as usual.</summary>
public sealed class ImageEditTests : IDisposable
{
    private readonly VqVae _vae;
    private readonly VarModel _model;
    private readonly VarSampler _sampler;
    private static readonly SamplerSettings Settings = new() { Cfg = 2, TopK = 0, TopP = 0.95 };

    public ImageEditTests()
    {
        (_vae, _model) = TinyModels.Create();
        _sampler = new VarSampler(_model, _vae);
    }

    public void Dispose()
    {
        _model.Dispose();
        _vae.Dispose();
    }

    private Tensor Image(int seed)
    {
        using var g = new Generator((ulong)seed);
        int size = _vae.Config.ImageSize;
        return rand([1, _vae.Config.InChannels, size, size], generator: g).mul(2).sub(1);
    }

    [Fact]
    public void AKnownShareOfAtLeastTheThresholdTeacherForcesATokenAtEveryScale()
    {
        using var image = Image(1);
        Assert.Equal(8, _vae.Config.ImageSize);
        Assert.Equal([1, 2, 3, 4], _vae.Config.VPatchNums);
        // Generate the left half (x < 4): per scale the kept share of every cell is an area average of the mask, as the
        // tokenizer downsamples — 1×1: 0.5; 2×2: columns 0 | 1; 3×3 (cells over pixels 0–2, 2–5, 5–7): 0 | 0.5 | 1; 4×4: 0 0 | 1 1.
        using var constraint = TokenConstraint.From(ImageEdit.Box(image, 0, 0, 4, 8), _vae);
        Assert.Equal([1L, 2, 6, 8], constraint.KnownCounts);
        using var strict = TokenConstraint.From(ImageEdit.Box(image, 0, 0, 4, 8, knownThreshold: 1), _vae);
        Assert.Equal([0L, 2, 3, 8], strict.KnownCounts);
        using var outside = TokenConstraint.From(ImageEdit.Box(image, 0, 0, 4, 8, outpaint: true), _vae);
        Assert.Equal([1L, 2, 6, 8], outside.KnownCounts);   // the mirror image of the same split

        // The mask is pooled as the tokens are: pixels → the 4×4 latent, then the latent → 3×3 over overlapping cells
        // (latent rows 0–1, 1–2, 2–3). Regenerating pixel row 0 leaves latent row 0 half known, so the 3×3 top row is
        // (0.5 + 1) / 2 = 0.75 known and kept at threshold 0.7; pooling the pixels directly (rows 0–2) would give 2/3.
        using var row = TokenConstraint.From(ImageEdit.Box(image, 0, 0, 8, 1, knownThreshold: 0.7), _vae);
        Assert.Equal([1L, 4, 9, 12], row.KnownCounts);
    }

    [Fact]
    public void KnownTokensAreTheImagesOwnAndTheRestIsSampled()
    {
        using var scope = NewDisposeScope();
        var image = Image(2);
        using var constraint = TokenConstraint.From(ImageEdit.Box(image, 2, 2, 6, 6), _vae);
        using var r = _sampler.Sample([1, 3, 3], Settings, SampleRng.PerSampleFrom(10, 3), constraint: constraint);
        var own = _vae.ImageToIndices(image);
        bool anyDifferent = false;
        for (int si = 0; si < own.Count; si++)
        {
            var known = constraint.Known[si].expand(3, -1);
            var expected = own[si].expand(3, -1);
            Assert.True(r.Tokens[si].masked_select(known).eq(expected.masked_select(known)).all().item<bool>(), $"scale {si}: a known token was not the image's");
            anyDifferent |= !r.Tokens[si].masked_select(known.logical_not()).eq(expected.masked_select(known.logical_not())).all().item<bool>();
        }
        Assert.True(anyDifferent, "the generated region should not just repeat the image's tokens");
    }

    [Fact]
    public void AnEditThatKeepsNothingSamplesExactlyWhatPlainSamplingDoes()
    {
        using var image = Image(3);
        using var constraint = TokenConstraint.From(ImageEdit.Box(image, 0, 0, 8, 8), _vae);
        Assert.All(constraint.KnownCounts, c => Assert.Equal(0L, c));
        using var edited = _sampler.Sample([0, 4], Settings with { MoreSmooth = true }, SampleRng.PerSampleFrom(5, 2), constraint: constraint);
        using var plain = _sampler.Sample([0, 4], Settings with { MoreSmooth = true }, SampleRng.PerSampleFrom(5, 2));
        Assert.Equal(plain.TokensBL().data<long>().ToArray(), edited.TokensBL().data<long>().ToArray());
        Assert.Equal(0.0, plain.Images.sub(edited.Images).abs().max().item<float>());
    }

    [Theory]
    [InlineData(0, 0, 0, 4, "the box 0,0,0,4 must satisfy")]
    [InlineData(2, 2, 9, 6, "0 ≤ x0 < x1 ≤ 8")]
    public void ABoxOutsideTheImageIsRefused(int x0, int y0, int x1, int y1, string message)
    {
        using var image = Image(4);
        Assert.Contains(message, Assert.Throws<VarSharpException>(() => ImageEdit.Box(image, x0, y0, x1, y1)).Message);
    }

    [Fact]
    public void AnEditThatKeepsEverythingOrDoesNotFitTheModelIsRefused()
    {
        using var image = Image(5);
        var all = ImageEdit.Box(image, 0, 0, 8, 8, outpaint: true);
        Assert.Contains("nothing to generate", Assert.Throws<VarSharpException>(() => all.Validate(_vae)).Message);
        var small = ImageEdit.Box(image.narrow(2, 0, 4).narrow(3, 0, 4), 0, 0, 2, 2);
        Assert.Contains("this model's tokenizer takes", Assert.Throws<VarSharpException>(() => small.Validate(_vae)).Message);
    }
}
