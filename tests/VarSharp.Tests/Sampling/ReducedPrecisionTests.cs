using VarSharp.Sampling;
using VarSharp.Tests.Support;
using VarSharp.Tests.Transformer;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Sampling;

/// <summary>
/// The transformer in bfloat16 or float16 (half the memory): fp32 weights convert as they load, teacher-forcing logits
/// stay close to the fp32 model's, and sampling works end to end (the tokenizer stays fp32).
/// </summary>
public sealed class ReducedPrecisionTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Theory]
    [InlineData(ScalarType.BFloat16, 0.05)]
    [InlineData(ScalarType.Float16, 0.01)]
    public void AHalfPrecisionTransformerStaysCloseToFloat32AndSamples(ScalarType dtype, double tolerance)
    {
        var dir = TinyModels.WriteBundle(_temp.File("bundle"));
        using var full = VarPipeline.Load(dir);
        using var half = VarPipeline.Load(dir, dtype: dtype);
        Assert.Equal(dtype, half.Model.DType);
        Assert.All(half.Model.parameters(), p => Assert.Equal(dtype, p.dtype));

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var gen = new Generator(3);
        var cfg = full.Model.Config;
        var labels = tensor(new long[] { 0, 1, 2, 3 });
        var gt = randint(0, cfg.VocabSize, [4, cfg.L], dtype: ScalarType.Int64, generator: gen);
        var x = full.Tokenizer.IndicesToVarInput(gt.split(cfg.PatchNums.Select(p => (long)p * p).ToArray(), 1));
        var a = full.Model.Forward(labels, x);
        var b = half.Model.Forward(labels, x);
        Assert.Equal(ScalarType.Float32, b.dtype);   // logits come back in fp32 for sampling
        double rel = TensorAssert.MaxAbsDiff(b, a) / TensorAssert.MaxAbs(a);
        output.WriteLine($"{dtype}: max |Δlogit| / max |logit| = {rel:g3}");
        Assert.True(rel <= tolerance, $"{dtype} logits differ by {rel:g3} of the largest logit");

        var images = half.Generate(half.DefaultOptions() with { Classes = [1, 2], Seed = 3 });
        Assert.Equal(2, images.Count);
        Assert.All(images, im => Assert.Equal((8, 8), (im.Width, im.Height)));
    }
}
