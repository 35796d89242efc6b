using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Tests.Support;
using VarSharp.Tokenizer;
using static TorchSharp.torch;

namespace VarSharp.Tests.Tokenizer;

public class VqVaeInvariantTests
{
    private static Tensor Images(int batch, int size, int seed)
    {
        var g = new Generator((ulong)seed);
        return rand([batch, 3, size, size], generator: g).mul(2).sub(1);
    }

    private static VqVae Tiny(int seed, int shareQuantResi = 2, bool znorm = false)
    {
        manual_seed(seed);
        return new VqVae(TinyConfigs.VqVae(shareQuantResi, znorm));
    }

    [Fact]
    public void UsagePerScaleCountsCodesWhoseHitsReachTheReferenceMargin()
    {
        using var vae = Tiny(1);
        int V = vae.Config.VocabSize, S = vae.Config.NumScales;
        Assert.Equal(16, V);
        var hits = new float[S * V];
        hits[0] = hits[1] = 1.0f;            // scale 0: two codes exactly at the margin count …
        hits[2] = 0.99f;                     // … one just below does not
        for (int v = 0; v < V; v++) hits[V + v] = 5f;   // scale 1: every code
        using (var noGrad = no_grad())
            vae.Quantizer.EmaVocabHits.copy_(tensor(hits, [S, V]));
        // margin = 0.08 · tokens per batch / V = 0.08 · 200 / 16 = 1.0
        var usage = vae.Quantizer.UsagePercentPerScale(200);
        Assert.Equal(S, usage.Length);
        Assert.Equal(100.0 * 2 / 16, usage[0], 5);
        Assert.Equal(100.0, usage[1], 5);
        Assert.All(usage.Skip(2), u => Assert.Equal(0.0, u));
    }

    [Fact]
    public void TheFirstTrainingForwardRecordsTheHitsOfEveryScale()
    {
        using var vae = Tiny(2);
        using var scope = NewDisposeScope();
        var x = Images(3, vae.Config.ImageSize, 5);
        using (var output = vae.TrainForward(x)) { }
        // As in the reference, record_hit counts per scale, so only scale 0 sees record_hit == 0 and copies its counts
        // (its row sums to its B · 1 tokens); every later scale already blends, 0.9 · 0 + 0.1 · hits.
        Assert.Equal(vae.Config.NumScales, vae.Quantizer.RecordHit);
        var rowSums = vae.Quantizer.EmaVocabHits.sum(1).data<float>().ToArray();
        var expected = vae.Config.VPatchNums.Select((p, si) => (si == 0 ? 1f : 0.1f) * 3 * p * p).ToArray();
        for (int si = 0; si < expected.Length; si++) Assert.Equal(expected[si], rowSums[si], 4);
    }

    [Theory]
    [InlineData(0, false)]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(2, true)]
    public void EncodeThenDecodeEqualsReconstruct(int shareQuantResi, bool znorm)
    {
        using var vae = Tiny(1, shareQuantResi, znorm);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = Images(3, vae.Config.ImageSize, 7);
        var idx = vae.ImageToIndices(x);
        var viaTokens = vae.IndicesToImage(idx);
        var direct = vae.Reconstruct(x);
        Assert.Equal(vae.Config.VPatchNums.Select(p => (long)p * p), idx.Select(t => t.shape[1]));
        AssertClose(direct, viaTokens, 1e-6);
    }

    [Fact]
    public void FhatsFromQuantizationEqualFhatsFromIndices()
    {
        using var vae = Tiny(2);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var f = vae.Encode(Images(2, vae.Config.ImageSize, 3));
        using var q = vae.Quantizer.Quantize(f, keepFhats: true, keepDiagnostics: false);
        var fromIdx = vae.Quantizer.IndicesToFhats(q.Indices, lastOnly: false);
        for (int k = 0; k < q.Fhats.Count; k++) AssertClose(q.Fhats[k], fromIdx[k], 1e-6);
    }

    [Fact]
    public void TeacherForcingInputEqualsStepwiseAutoregressiveInputs()
    {
        using var vae = Tiny(3);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var idx = vae.ImageToIndices(Images(2, vae.Config.ImageSize, 4));
        var teacher = vae.IndicesToVarInput(idx);
        var pn = vae.Config.VPatchNums;
        var fHat = zeros(2, vae.Config.ZChannels, vae.Config.LatentSize, vae.Config.LatentSize);
        var embedded = vae.Quantizer.Embed(idx);
        var pieces = new List<Tensor>();
        for (int si = 0; si < pn.Length - 1; si++)
            pieces.Add(vae.Quantizer.NextAutoregressiveInput(si, fHat, embedded[si]).flatten(2).transpose(1, 2));
        AssertClose(teacher, cat(pieces, 1), 1e-6);
        var last = vae.Quantizer.NextAutoregressiveInput(pn.Length - 1, fHat, embedded[^1]);
        AssertClose(last, vae.Quantizer.IndicesToFhats(idx, lastOnly: true)[0], 1e-6);
    }

    [Fact]
    public void TrainingForwardReconstructsLikeInferenceAndBackpropagates()
    {
        using var vae = Tiny(4);
        using var scope = NewDisposeScope();
        var x = Images(2, vae.Config.ImageSize, 5);
        Tensor inference;
        using (no_grad()) inference = vae.Reconstruct(x);
        vae.train();
        using var output = vae.TrainForward(x);
        AssertClose(output.Reconstruction.detach().clamp(-1, 1), inference, 1e-5);
        var loss = nn.functional.mse_loss(output.Reconstruction, x) + output.VqLoss;
        loss.backward();
        var grads = vae.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad);
        Assert.NotNull(grads["encoder.conv_in.weight"]);
        Assert.True(grads["encoder.conv_in.weight"]!.abs().sum().item<float>() > 0, "encoder gets gradient through the straight-through path");
        Assert.True(grads["quantize.embedding.weight"]!.abs().sum().item<float>() > 0, "codebook gets gradient through the vq loss");
        Assert.True(vae.Quantizer.RecordHit > 0);
        Assert.Equal(x.shape[0] * vae.Config.VPatchNums.Sum(p => p * p), output.Hits_SV.sum().item<float>());
    }

    [Fact]
    public void WrongImageSizeIsAClearError()
    {
        using var vae = Tiny(5);
        using var x = Images(1, vae.Config.ImageSize + 2, 1);
        var e = Assert.Throws<VarSharpException>(() => vae.ImageToIndices(x));
        Assert.Contains("needs images of shape (B, 3, 8, 8)", e.Message);
        Assert.Contains("(1, 3, 10, 10)", e.Message);
    }

    [Fact]
    public void WeightsThatDoNotMatchTheConfigAreRefusedByName()
    {
        using var small = Tiny(6);
        var weights = small.state_dict().ToDictionary(kv => "vae." + kv.Key, kv => kv.Value);
        using var bigger = new VqVae(TinyConfigs.VqVae() with { VocabSize = 32 });
        var e = Assert.Throws<VarSharpException>(() => ModuleWeights.LoadStrict(bigger, weights, "vae."));
        Assert.Contains("quantize", e.Message);
        Assert.Contains("[16, 4]", e.Message);
        Assert.Contains("[32, 4]", e.Message);
    }

    [Fact]
    public void OutOfRangeIndicesAreRefused()
    {
        using var vae = Tiny(7);
        var idx = vae.Config.VPatchNums.Select(p => full([1L, p * p], 99L, dtype: int64)).ToList();
        var e = Assert.Throws<VarSharpException>(() => vae.IndicesToImage(idx));
        Assert.Contains("[0, 15]", e.Message);
    }

    internal static void AssertClose(Tensor expected, Tensor actual, double tol)
    {
        Assert.Equal(expected.shape, actual.shape);
        double maxAbs = (expected - actual).abs().max().item<float>();
        Assert.True(maxAbs <= tol, $"max |Δ| = {maxAbs:g3} > {tol:g3}; first expected {string.Join(", ", expected.flatten().data<float>().Take(4))}, actual {string.Join(", ", actual.flatten().data<float>().Take(4))}");
    }
}

public class VqVaeInitTests
{
    [Fact]
    public void FreshModelHasPyTorchDefaultNormsAndFiniteWeights()
    {
        // Guards against TorchSharp 0.107's GroupNorm, which does not initialise its affine parameters.
        for (int i = 0; i < 3; i++)
        {
            using var vae = new VqVae(TinyConfigs.VqVae());
            foreach (var (name, t) in vae.state_dict())
            {
                Assert.False(t.isnan().any().item<bool>() || t.isinf().any().item<bool>(), $"{name} is not finite");
                if (name.Contains("norm") && name.EndsWith(".weight")) Assert.True(t.eq(1).all().item<bool>(), $"{name} should start at 1");
                if (name.Contains("norm") && name.EndsWith(".bias")) Assert.True(t.eq(0).all().item<bool>(), $"{name} should start at 0");
            }
        }
    }
}
