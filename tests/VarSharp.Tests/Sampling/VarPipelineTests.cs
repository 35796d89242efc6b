using System.Text.Json.Nodes;
using VarSharp.Checkpoints;
using VarSharp.Sampling;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Sampling;

/// <summary>The five-line API over a model folder, and loading/validating the transformer of a folder.</summary>
public sealed class VarPipelineTests(TinyModelFolderFixture model) : IClassFixture<TinyModelFolderFixture>, IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly string _dir = model.Dir;

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void GenerateGivesOnePngPerImageInRequestOrder()
    {
        using var pipe = VarPipeline.Load(_dir);
        var images = pipe.Generate(new SampleOptions { Classes = [3, 1], Count = 2, Cfg = 4, Seed = 1, Scales = true });

        Assert.Equal([3, 3, 1, 1], images.Select(i => i.Class));
        Assert.Equal([0, 1, 2, 3], images.Select(i => i.Index));
        Assert.Equal([1L, 2L, 3L, 4L], images.Select(i => i.Seed!.Value));
        Assert.All(images, im =>
        {
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, im.Png.Take(4));
            Assert.Equal((8, 8, 3), (im.Width, im.Height, im.Channels));
            Assert.NotNull(im.ScalesPng);
        });
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, VarPipeline.GridPng(images).Take(4));
        Assert.Equal(14, new SampleOptions().ResolveTopK(64));
        Assert.Equal(900, new SampleOptions().ResolveTopK(4096));
        Assert.Equal(4, new SampleOptions().ResolveTopK(16));
    }

    [Fact]
    public void SameSeedSameBytesWhateverTheBatchSize()
    {
        using var pipe = VarPipeline.Load(_dir);
        var options = new SampleOptions { Count = 5, Seed = 9, MoreSmooth = true };
        var a = pipe.Generate(options with { BatchSize = 8 });
        var b = pipe.Generate(options with { BatchSize = 2 });
        var c = pipe.Generate(options with { Seed = 10 });
        Assert.Equal(a.Select(i => i.Png), b.Select(i => i.Png));
        Assert.Equal(a.Select(i => i.Class), b.Select(i => i.Class));
        // Image i of seed 10 is image i+1 of seed 9 (per-sample seeds are seed+i).
        Assert.Equal(a.Skip(1).Select(i => i.Png), c.Take(4).Select(i => i.Png));
    }

    [Fact]
    public void SharedRngReproducesOneReferenceBatch()
    {
        using var pipe = VarPipeline.Load(_dir);
        var options = new SampleOptions { Classes = [0, 2, 4], Seed = 3, PerSampleSeeds = false, BatchSize = 1, TopK = 0, TopP = 0 };
        var images = pipe.Generate(options);
        Assert.All(images, im => Assert.Null(im.Seed));
        using var direct = pipe.Sampler.Sample([0, 2, 4], options.ToSettings(pipe.VocabSize), SampleRng.Shared(3));
        using var png0 = direct.Images[0].mul(2).sub(1);
        Assert.Equal(VarSharp.Data.ImageIO.EncodePng(png0), images[0].Png);
    }

    [Fact]
    public void ClassesResolveByIdOrName()
    {
        using var pipe = VarPipeline.Load(_dir);
        Assert.Equal(["class 0", "class 1", "class 2", "class 3", "class 4"], pipe.ClassNames);   // the tiny config names none
        Assert.Equal(3, pipe.ClassId("3"));
        Assert.Equal(4, pipe.ClassId(" CLASS 4 "));
        Assert.Equal("class id 6 is unknown: this model has classes 0 to 4 (and -1 or 'uncond' samples unconditionally).", Assert.Throws<VarSharpException>(() => pipe.ClassId("6")).Message);
        Assert.Equal(5, pipe.ClassId("-1"));
        Assert.Equal(5, pipe.ClassId("5"));
        Assert.Equal(5, pipe.ClassId("Uncond"));
        Assert.Equal("unconditional", pipe.ClassName(pipe.ClassId("unconditional")));
        Assert.StartsWith("'owl' is neither a class id (0 to 4) nor a class name", Assert.Throws<VarSharpException>(() => pipe.ClassId("owl")).Message);

        var (vae, var) = TinyModels.Create();
        using var named = new VarPipeline(vae, var, ownsModels: true) { ClassNames = ["a", "b", "c", "d", "e"] };
        Assert.Equal(2, named.ClassId("C"));
        // Names that are numbers in another order (image folders "0" … "11" sort as text): a number is an id, name:N a name.
        using var numbered = new VarPipeline(vae, var) { ClassNames = ["0", "1", "10", "11", "2"] };
        Assert.Equal(2, numbered.ClassId("2"));
        Assert.Equal(4, numbered.ClassId("name:2"));
        Assert.Equal(2, numbered.ClassId("name: 10"));
        Assert.Equal("'7' is not a class name of this model (0, 1, 10, 11, 2).", Assert.Throws<VarSharpException>(() => numbered.ClassId("name:7")).Message);
        Assert.Throws<VarSharpException>(() => new VarPipeline(vae, var) { ClassNames = ["a"] });
    }

    [Fact]
    public void ProgressReachesTheTotal()
    {
        using var pipe = VarPipeline.Load(_dir);
        var seen = new List<SampleProgress>();
        pipe.Generate(new SampleOptions { Count = 3, BatchSize = 2 }, new Collect(seen));
        Assert.Equal(new SampleProgress(3, 3, 8, 8), seen[^1]);
        Assert.True(seen.Zip(seen.Skip(1)).All(p => p.Second.StepsDone >= p.First.StepsDone));
    }

    [Theory]
    [InlineData("class", "class id 7 is unknown: this model has classes 0 to 4, and 5 samples unconditionally.")]
    [InlineData("count", "count must be positive, found 0.")]
    [InlineData("cfg", "cfg (guidance scale) must be a finite number ≥ 0, found -0.5.")]
    [InlineData("topk", "top-k must be at most the vocabulary size 16 (or 0 for off), found 900.")]
    [InlineData("topp", "top-p must be in [0, 1] (0 is off), found 2.")]
    [InlineData("batch", "batch size must be positive, found 0.")]
    public void BadOptionsAreOneSentenceErrors(string what, string expected)
    {
        using var pipe = VarPipeline.Load(_dir);
        var o = new SampleOptions();
        o = what switch
        {
            "class" => o with { Classes = [1, 7] },
            "count" => o with { Count = 0 },
            "cfg" => o with { Cfg = -0.5 },
            "topk" => o with { TopK = 900 },
            "topp" => o with { TopP = 2 },
            _ => o with { BatchSize = 0 },
        };
        Assert.Equal(expected, Assert.Throws<VarSharpException>(() => pipe.Generate(o)).Message);
    }

    [Fact]
    public void LoadTransformerReadsTheVarBlockWithTheTokenizersVocabulary()
    {
        using var model = ModelFolder.LoadTransformer(_dir);
        Assert.Equal(TinyModels.Var(), model.Config);
        Assert.False(model.training);
    }

    [Theory]
    [InlineData("patch_nums", "the transformer's patch_nums [1, 2, 4] differ from the tokenizer's v_patch_nums [1, 2, 3, 4]")]
    [InlineData("vocab_size", "the transformer's vocab_size 32 differs from the tokenizer's vocab_size 16")]
    [InlineData("cvae", "the transformer's cvae 8 differs from the tokenizer's z_channels 4")]
    [InlineData("no_var", "has no 'var' block, so it describes no transformer")]
    public void AnIncompatibleConfigIsRefused(string edit, string expected)
    {
        var dir = TinyModels.WriteFolder(_temp.File("bad-" + edit), editConfig: root =>
        {
            var v = root["var"]!.AsObject();
            switch (edit)
            {
                case "patch_nums": v["patch_nums"] = new JsonArray(1, 2, 4); break;
                case "vocab_size": v["vocab_size"] = 32; break;
                case "cvae": v["cvae"] = 8; break;
                default: root.Remove("var"); break;
            }
            return root;
        });
        var e = Assert.Throws<VarSharpException>(() => ModelFolder.LoadTransformer(dir));
        Assert.Contains(expected, e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Single(e.Message.Split(". ", StringSplitOptions.RemoveEmptyEntries));
    }

    private sealed class Collect(List<SampleProgress> seen) : IProgress<SampleProgress>
    {
        public void Report(SampleProgress value) => seen.Add(value);
    }
}
