using System.Text.Json.Nodes;
using VarSharp.Checkpoints;
using VarSharp.Data;
using VarSharp.Sampling;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Sampling;

/// <summary>Explicit batches (what the server coalesces), per-scale frames, cancellation between scales, class names.</summary>
public sealed class GenerateRowsTests(TinyModelFolderFixture model) : IClassFixture<TinyModelFolderFixture>, IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly VarPipeline _pipe = VarPipeline.Load(model.Dir);

    public void Dispose()
    {
        _pipe.Dispose();
        _temp.Dispose();
    }

    private static SampleOptions Options => new() { Cfg = 3, TopK = 6, TopP = 0.9 };

    [Fact]
    public void EachRowIsTheImageItsOwnRequestWouldGetAlone()
    {
        // Two "requests" (class 1 × 2 from seed 40, class 4 × 1 from seed 7) sampled as one batch.
        SampleRow[] rows = [new(1, 40), new(1, 41), new(4, 7)];
        var batch = _pipe.GenerateRows(rows, Options.ToSettings(_pipe.VocabSize));
        var first = _pipe.Generate(Options with { Classes = [1], Count = 2, Seed = 40 });
        var second = _pipe.Generate(Options with { Classes = [4], Count = 1, Seed = 7 });
        Assert.Equal(first.Concat(second).Select(i => i.Png), batch.Select(i => i.Png));
        Assert.Equal([0, 1, 2], batch.Select(i => i.Index));
        Assert.Equal([40L, 41L, 7L], batch.Select(i => i.Seed!.Value));
    }

    [Fact]
    public void RowsWithoutAClassDrawItFromTheirOwnGenerator()
    {
        var batch = _pipe.GenerateRows([new(null, 3), new(null, 12)], Options.ToSettings(_pipe.VocabSize));
        var alone = _pipe.Generate(Options with { Count = 1, Seed = 12 })[0];
        Assert.Equal(alone.Class, batch[1].Class);
        Assert.Equal(alone.Png, batch[1].Png);
        var e = Assert.Throws<VarSharpException>(() => _pipe.GenerateRows([new(null, 3), new(2, 4)], Options.ToSettings(_pipe.VocabSize)));
        Assert.Equal("the rows of one batch must either all give a class or all draw one.", e.Message);
        Assert.Throws<VarSharpException>(() => _pipe.GenerateRows([], Options.ToSettings(_pipe.VocabSize)));
    }

    [Fact]
    public void FramesComeOncePerScaleCoarseToFineEndingAtTheFinalImage()
    {
        var frames = new List<ScaleFrame>();
        var images = _pipe.GenerateRows([new(2, 5), new(0, 6)], Options.ToSettings(_pipe.VocabSize), frames.Add);
        Assert.Equal([0, 1, 2, 3], frames.Select(f => f.ScaleIndex));
        Assert.Equal([1, 2, 3, 4], frames.Select(f => f.PatchSize));
        Assert.All(frames, f => Assert.Equal((4, 2), (f.NumScales, f.Png.Count)));
        Assert.Equal(images.Select(i => i.Png), frames[^1].Png);
        Assert.NotEqual(frames[0].Png[0], frames[^1].Png[0]);
    }

    [Fact]
    public void ACancelledTokenStopsBetweenScales()
    {
        using var cts = new CancellationTokenSource();
        var seen = new List<int>();
        Assert.ThrowsAny<OperationCanceledException>(() => _pipe.GenerateRows([new(1, 1)], Options.ToSettings(_pipe.VocabSize), f =>
        {
            seen.Add(f.ScaleIndex);
            if (f.ScaleIndex == 1) cts.Cancel();
        }, cts.Token));
        Assert.Equal([0, 1], seen);

        var steps = new List<int>();
        Assert.ThrowsAny<OperationCanceledException>(() => _pipe.Sampler.Sample([1], Options.ToSettings(_pipe.VocabSize), SampleRng.PerSample(1),
            scaleDone: new Collect(steps), cancellationToken: cts.Token));
        Assert.Empty(steps);
        Assert.ThrowsAny<OperationCanceledException>(() => _pipe.Generate(Options with { Classes = [0] }, cancellationToken: cts.Token));

        // The pipeline still samples normally afterwards.
        Assert.Single(_pipe.GenerateRows([new(1, 1)], Options.ToSettings(_pipe.VocabSize)));
    }

    [Theory]
    [InlineData("top", "a,b,c,d,e")]
    [InlineData("var", "a,b,c,d,e")]
    [InlineData("none", "class 0,class 1,class 2,class 3,class 4")]
    public void ClassNamesComeFromTheConfig(string where, string expected)
    {
        var dir = TinyModels.WriteFolder(_temp.File(where), editConfig: root =>
        {
            var names = new JsonArray("a", "b", "c", "d", "e");
            if (where == "top") root["classes"] = names;
            if (where == "var") root["var"]!["classes"] = names;
            return root;
        });
        Assert.Equal(expected.Split(','), ModelFolder.ReadClassNames(ModelFolder.ConfigPath(dir), 5));
        using var pipe = VarPipeline.Load(dir);   // the extra key does not disturb loading
    }

    [Fact]
    public void FashionMnistModelsGetItsNamesAndBadListsAreRefused()
    {
        var path = _temp.File("config.json");
        File.WriteAllText(path, """{"dataset": "Fashion-MNIST"}""");
        Assert.Equal(FashionMnist.ClassNames, ModelFolder.ReadClassNames(path, 10));
        Assert.Equal("class 4", ModelFolder.ReadClassNames(path, 5)[4]);
        File.WriteAllText(path, """{"classes": ["a", "b"]}""");
        Assert.Equal($"Config file {path}: 'classes' names 2 classes but the model has 3.",
            Assert.Throws<VarSharpException>(() => ModelFolder.ReadClassNames(path, 3)).Message);
        File.WriteAllText(path, """{"var": {"classes": [1, 2]}}""");
        Assert.Equal($"Config file {path}: 'var.classes' must be an array of class names (strings).",
            Assert.Throws<VarSharpException>(() => ModelFolder.ReadClassNames(path, 2)).Message);
    }

    private sealed class Collect(List<int> seen) : IProgress<int>
    {
        public void Report(int value) => seen.Add(value);
    }
}
