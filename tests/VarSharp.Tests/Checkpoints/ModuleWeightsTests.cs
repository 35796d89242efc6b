using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Tests.Transformer;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Tests.Checkpoints;

public class ModuleWeightsTests
{
    private static Dictionary<string, Tensor> StateOf(VarModel m, string prefix = "") =>
        m.state_dict().ToDictionary(kv => prefix + kv.Key, kv => kv.Value.clone());

    [Fact]
    public void LoadsWithPrefixAndIgnoresOtherPrefixes()
    {
        var cfg = VarModelTests.Tiny();
        using var src = new VarModel(cfg);
        using (var gen = new Generator(1)) src.InitWeights(gen);
        var sd = StateOf(src, "var.");
        sd["vae.something.weight"] = ones(3);
        using var dst = new VarModel(cfg);
        ModuleWeights.LoadStrict(dst, sd, "var.");
        var srcSd = src.state_dict();
        foreach (var (k, v) in dst.state_dict()) Assert.True(v.eq(srcSd[k]).all().item<bool>(), k);   // eq: -inf == -inf
    }

    [Fact]
    public void MissingKeyIsNamed()
    {
        var cfg = VarModelTests.Tiny();
        using var m = new VarModel(cfg);
        var sd = StateOf(m);
        sd.Remove("blocks.1.attn.zero_k_bias");
        var ex = Assert.Throws<VarSharpException>(() => ModuleWeights.LoadStrict(m, sd));
        Assert.Contains("lacks 1 key", ex.Message);
        Assert.Contains("blocks.1.attn.zero_k_bias", ex.Message);
    }

    [Fact]
    public void UnexpectedKeyIsNamed()
    {
        var cfg = VarModelTests.Tiny();
        using var m = new VarModel(cfg);
        var sd = StateOf(m, "var.");
        sd["var.shared_ada_lin.1.weight"] = zeros(6 * cfg.EmbedDim, cfg.EmbedDim);
        var ex = Assert.Throws<VarSharpException>(() => ModuleWeights.LoadStrict(m, sd, "var."));
        Assert.Contains("var.shared_ada_lin.1.weight", ex.Message);
        Assert.Contains("does not have", ex.Message);
    }

    [Fact]
    public void ShapeAndDtypeMismatchesNameKeyAndBothShapes()
    {
        var cfg = VarModelTests.Tiny();
        using var m = new VarModel(cfg);
        var sd = StateOf(m);
        sd["head.weight"] = zeros(cfg.VocabSize + 1, cfg.EmbedDim);
        var ex = Assert.Throws<VarSharpException>(() => ModuleWeights.LoadStrict(m, sd));
        Assert.Contains("'head.weight'", ex.Message);
        Assert.Contains($"[{cfg.VocabSize + 1}, {cfg.EmbedDim}]", ex.Message);
        Assert.Contains($"[{cfg.VocabSize}, {cfg.EmbedDim}]", ex.Message);

        sd = StateOf(m);
        sd["lvl_1L"] = sd["lvl_1L"].to(ScalarType.Int32);
        ex = Assert.Throws<VarSharpException>(() => ModuleWeights.LoadStrict(m, sd));
        Assert.Contains("'lvl_1L'", ex.Message);
        Assert.Contains("Int32", ex.Message);
    }
}
