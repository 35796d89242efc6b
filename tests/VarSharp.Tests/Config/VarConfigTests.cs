using System.Text.Json;
using VarSharp.Config;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Config;

public class VarConfigTests
{
    [Fact]
    public void PresetsHaveTheOfficialShapes()
    {
        var d16 = VarConfig.D16;
        Assert.Equal((1000, 16, 1024, 16, false, true, 4096, 32), (d16.NumClasses, d16.Depth, d16.EmbedDim, d16.NumHeads, d16.SharedAln, d16.AttnL2Norm, d16.VocabSize, d16.Cvae));
        Assert.Equal(680, d16.L);
        Assert.Equal(1, d16.FirstL);
        Assert.Equal(4096, d16.FfnHidden);
        Assert.Equal((424, 680), d16.BeginEnds[^1]);
        Assert.Equal(0.1 * 16 / 24, d16.DropPathRate, 12);
        Assert.Equal(1920, VarConfig.D30.EmbedDim);
        var d36 = VarConfig.D36;
        Assert.True(d36.SharedAln);
        Assert.Equal(2240, d36.L);
        Assert.Equal(2304, d36.EmbedDim);
        Assert.Throws<VarSharpException>(() => VarConfig.Preset(12));
    }

    [Fact]
    public void FfnHiddenRoundsHalfToEvenLikePython()
    {
        var c = VarConfig.D16 with { EmbedDim = 5, NumHeads = 1, MlpRatio = 0.5 };   // 2.5 → 2
        Assert.Equal(2, c.FfnHidden);
    }

    [Fact]
    public void JsonRoundTripsInSnakeCase()
    {
        var c = VarConfig.D36;
        var json = c.ToJson();
        Assert.Contains("\"patch_nums\"", json);
        Assert.Contains("\"attn_l2_norm\": true", json);
        Assert.Contains("\"cvae\": 32", json);
        Assert.DoesNotContain("\"ffn_hidden\"", json);
        Assert.Equal(c, VarConfig.FromJson(json));
    }

    [Theory]
    [InlineData("embed_dim", 65, "divisible by num_heads")]
    [InlineData("depth", 0, "depth must be positive")]
    [InlineData("vocab_size", -1, "vocab_size")]
    public void ValidationNamesTheProblem(string field, int value, string expected)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(VarConfig.D16.ToJson())!.AsObject();
        node[field] = value;
        var ex = Assert.Throws<VarSharpException>(() => VarConfig.FromJson(node.ToJsonString()));
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void PatchNumsMustIncrease()
    {
        var ex = Assert.Throws<VarSharpException>(() => (VarConfig.D16 with { PatchNums = [1, 3, 3] }).Validate());
        Assert.Contains("strictly increasing", ex.Message);
    }

    [Fact]
    public void MissingRequiredFieldIsAVarSharpException()
    {
        Assert.Throws<VarSharpException>(() => VarConfig.FromJson("{\"depth\": 2}"));
    }

    [GoldenFact]
    public void GoldenConfigsGiveTheirDerivedValues()
    {
        foreach (var dir in SharedData.GoldenCases())
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
            var cfg = VarConfig.FromGoldenConfig(doc.RootElement);
            var v = doc.RootElement.GetProperty("var");
            Assert.Equal(v.GetProperty("L").GetInt32(), cfg.L);
            Assert.Equal(v.GetProperty("first_l").GetInt32(), cfg.FirstL);
            Assert.Equal(v.GetProperty("ffn_hidden").GetInt32(), cfg.FfnHidden);
            Assert.Equal(v.GetProperty("head_dim").GetInt32(), cfg.HeadDim);
            Assert.Equal(v.GetProperty("attn_scale").GetDouble(), cfg.AttnScale, 12);
            var be = v.GetProperty("begin_ends").EnumerateArray().Select(p => (p[0].GetInt32(), p[1].GetInt32())).ToArray();
            Assert.Equal(be, cfg.BeginEnds);
            Assert.Equal(doc.RootElement.GetProperty("vqvae").GetProperty("vocab_size").GetInt32(), cfg.VocabSize);
        }
    }

    /// <summary>
    /// Block drop-path rates as the reference's torch.linspace(0, rate, depth) gives them in float32. The expected
    /// values were printed by Debian's torch 1.13 (`[x.item() for x in torch.linspace(0, 0.1, 4)]`, likewise for
    /// 0.0667 over 6); rate·i/(depth − 1) rounded once to float32 differs from them in the last bit.
    /// </summary>
    [Theory]
    [InlineData(4, 0.1, new[] { 0.0, 0.03333333507180214, 0.06666666269302368, 0.10000000149011612 })]
    [InlineData(6, 0.0667, new[] { 0.0, 0.013339999131858349, 0.026679998263716698, 0.04001999646425247, 0.053359996527433395, 0.06669999659061432 })]
    public void DropPathRatesAreTorchLinspaceInFloat32(int depth, double rate, double[] fromTorch)
    {
        var cfg = VarConfig.Preset(16) with { Depth = depth, DropPathRate = rate };
        Assert.Equal(fromTorch, cfg.DropPathPerBlock);
    }
}
