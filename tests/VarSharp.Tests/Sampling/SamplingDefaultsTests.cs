using System.Net;
using System.Text.Json.Nodes;
using VarSharp.Checkpoints;
using VarSharp.Sampling;
using VarSharp.Tests.Cli;
using VarSharp.Tests.Support;
using VarSharp.Tests.Web;

namespace VarSharp.Tests.Sampling;

/// <summary>A model's recommended sampling settings (config.json's `sampling` block) reach the library, `sample` and the server.</summary>
public sealed class SamplingDefaultsTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    private string ModelWith(string name, JsonNode? sampling) => TinyModels.WriteFolder(_temp.File(name), editConfig: root =>
    {
        if (sampling is not null) root["sampling"] = sampling;
        return root;
    });

    private string Recommending() => ModelWith("recommending", JsonNode.Parse("""{"cfg": 1.5, "top_k": 3, "top_p": 0.8}"""));

    [Fact]
    public void AModelWithoutABlockGetsTheReferenceDemosSettings()
    {
        using var pipe = VarPipeline.Load(ModelWith("plain", null));
        Assert.Equal(SamplingDefaults.Reference, pipe.Defaults);
        Assert.Equal((4.0, (int?)null, 0.95), (pipe.DefaultOptions().Cfg, pipe.DefaultOptions().TopK, pipe.DefaultOptions().TopP));
    }

    [Fact]
    public void TheBlockReachesThePipelineAndMissingFieldsKeepTheReference()
    {
        using (var pipe = VarPipeline.Load(Recommending()))
            Assert.Equal(new SamplingDefaults(1.5, 3, 0.8), pipe.Defaults);
        using (var pipe = VarPipeline.Load(ModelWith("cfg-only", JsonNode.Parse("""{"cfg": 2}"""))))
            Assert.Equal(new SamplingDefaults(2.0, null, 0.95), pipe.Defaults);
    }

    [Theory]
    [InlineData("""{"cfg": -1}""", "sampling.cfg must be a finite number ≥ 0")]
    [InlineData("""{"top_p": 1.5}""", "sampling.top_p must be in [0, 1]")]
    [InlineData("""{"top_k": 17}""", "sampling.top_k must be an integer from 0 (off) to the vocabulary size 16")]
    [InlineData("""{"cfg": "high"}""", "sampling.cfg must be a number")]
    [InlineData("""{"temperature": 1}""", "sampling.temperature is not a sampling setting")]
    [InlineData("""[1.5]""", "'sampling' must be an object")]
    public void ABadBlockIsRefusedInOneSentence(string block, string message)
    {
        var dir = ModelWith("bad", JsonNode.Parse(block));
        var e = Assert.Throws<VarSharpException>(() => ModelFolder.ReadSamplingDefaults(ModelFolder.ConfigPath(dir), 16));
        Assert.Contains(message, e.Message);
        var run = CliRun.Of("sample", "--model", dir, "-o", _temp.File("bad-out"));
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(message, run.Error);
    }

    [Fact]
    public void SampleUsesTheRecommendedSettingsUnlessTheCommandLineGivesItsOwn()
    {
        var dir = Recommending();
        var byDefault = CliRun.Of("sample", "--model", dir, "--class", "1", "-o", _temp.File("a"));
        Assert.Equal(0, byDefault.ExitCode);
        Assert.Contains("cfg 1.5, top-k 3, top-p 0.8", byDefault.Output);
        var given = CliRun.Of("sample", "--model", dir, "--class", "1", "--cfg", "2", "--top-k", "0", "--top-p", "0.9", "-o", _temp.File("b"));
        Assert.Equal(0, given.ExitCode);
        Assert.Contains("cfg 2, top-k 0, top-p 0.9", given.Output);
        // Same settings spelled out give the same image as the recommended ones.
        var spelled = CliRun.Of("sample", "--model", dir, "--class", "1", "--cfg", "1.5", "--top-k", "3", "--top-p", "0.8", "-o", _temp.File("c"));
        Assert.Equal(File.ReadAllBytes(Path.Combine(_temp.File("a"), "000-class1.png")), File.ReadAllBytes(Path.Combine(_temp.File("c"), "000-class1.png")));
    }

    [Fact]
    public async Task TheServerAdvertisesAndAppliesTheRecommendedSettings()
    {
        using var server = VarServerFactory.ForModel(Recommending());
        using var client = server.CreateClient();
        var defaults = (await (await client.GetAsync("/v1/models")).ReadJson()).GetProperty("models")[0].GetProperty("defaults");
        Assert.Equal((1.5, 3, 0.8), (defaults.GetProperty("cfg").GetDouble(), defaults.GetProperty("top_k").GetInt32(), defaults.GetProperty("top_p").GetDouble()));
        using var response = await client.Generate("""{"class": 2, "seed": 4}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var p = (await response.ReadJson()).GetProperty("params");
        Assert.Equal((1.5, 3, 0.8), (p.GetProperty("cfg").GetDouble(), p.GetProperty("top_k").GetInt32(), p.GetProperty("top_p").GetDouble()));
    }
}
