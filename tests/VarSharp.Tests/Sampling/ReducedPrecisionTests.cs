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

    /// <summary>
    /// max |Δlogit| / max |logit| of <paramref name="other"/>'s teacher-forcing logits against <paramref name="reference"/>'s
    /// on random token pyramids; the logits must come back as float32 for sampling.
    /// </summary>
    private static double RelativeLogitError(VarPipeline reference, VarPipeline other, ulong seed)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var gen = new Generator(seed);
        var cfg = reference.Model.Config;
        var labels = tensor(new long[] { 0, 1, 2, 3 });
        var gt = randint(0, cfg.VocabSize, [4, cfg.L], dtype: ScalarType.Int64, generator: gen);
        var x = reference.Tokenizer.IndicesToVarInput(gt.split(cfg.PatchNums.Select(p => (long)p * p).ToArray(), 1));
        var a = reference.Model.Forward(labels, x);
        var b = other.Model.Forward(labels, x);
        Assert.Equal(ScalarType.Float32, b.dtype);
        return TensorAssert.MaxAbsDiff(b, a) / TensorAssert.MaxAbs(a);
    }

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

        double rel = RelativeLogitError(full, half, seed: 3);
        output.WriteLine($"{dtype}: max |Δlogit| / max |logit| = {rel:g3}");
        Assert.True(rel <= tolerance, $"{dtype} logits differ by {rel:g3} of the largest logit");

        var images = half.Generate(half.DefaultOptions() with { Classes = [1, 2], Seed = 3 });
        Assert.Equal(2, images.Count);
        Assert.All(images, im => Assert.Equal((8, 8), (im.Width, im.Height)));
    }

    [Fact]
    public void ABundleConvertedToBf16StorageHalvesTheTransformerAndSamplesClose()
    {
        var dir = TinyModels.WriteBundle(_temp.File("src"));
        var converted = _temp.File("bf16");
        var run = Cli.CliRun.Of("convert", "-m", dir, "-o", converted);
        output.WriteLine(run.Output + run.Error);
        Assert.Equal(0, run.ExitCode);
        var manifest = VarSharp.Checkpoints.ModelBundle.Verify(converted);
        Assert.Contains("converted-from", File.ReadAllText(Path.Combine(converted, "manifest.json")));
        Assert.Contains(VarSharp.Checkpoints.FileDigest.Sha256(Path.Combine(dir, "model.safetensors")), File.ReadAllText(Path.Combine(converted, "manifest.json")));

        var stored = VarSharp.Checkpoints.SafeTensors.Load(Path.Combine(converted, "model.safetensors"));
        try
        {
            foreach (var (name, t) in stored.Where(kv => kv.Value.is_floating_point()))
                Assert.Equal(name.StartsWith("var.", StringComparison.Ordinal) ? ScalarType.BFloat16 : ScalarType.Float32, t.dtype);
        }
        finally
        {
            foreach (var t in stored.Values) t.Dispose();
        }

        // Loading widens the stored weights: a float32 model whose logits differ from the original's by bf16 rounding.
        using var full = VarPipeline.Load(dir);
        using var small = VarPipeline.Load(converted);
        Assert.Equal(ScalarType.Float32, small.Model.DType);
        double rel = RelativeLogitError(full, small, seed: 4);
        output.WriteLine($"bf16-stored weights: max |Δlogit| / max |logit| = {rel:g3}");
        Assert.InRange(rel, 1e-7, 0.05);
        Assert.Equal(2, small.Generate(small.DefaultOptions() with { Classes = [1, 2], Seed = 3 }).Count);

        var bad = Cli.CliRun.Of("convert", "-m", dir, "-o", _temp.File("bad"), "--weights-dtype", "int8");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("--weights-dtype must be f32, bf16 or f16 but is 'int8'", bad.Error);
        Assert.False(Directory.Exists(_temp.File("bad")));
    }
}
