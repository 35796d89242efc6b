using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Sampling;
using VarSharp.Tests.Support;
using VarSharp.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Training;

/// <summary>Runs of a tiny transformer on a tiny frozen tokenizer: determinism, exact resume, refusals, a usable bundle.</summary>
public class VarTrainerTests(ITestOutputHelper output)
{
    /// <summary>A tiny transformer for <see cref="TinyConfigs.VqVae"/> and the 10 classes of <see cref="TinyData"/>, label dropout and drop path on.</summary>
    internal static VarConfig Model(VqVaeConfig tok, int depth = 2) => VarTrainer.DefaultModelConfig(tok, numClasses: 10, depth) with
    {
        EmbedDim = 32,
        NumHeads = 2,
        DropPathRate = 0.1,
        CondDropRate = 0.25,
    };

    internal static VarTrainConfig Train(string tokenizer, string data, int steps = 6) => new()
    {
        Tokenizer = tokenizer,
        Data = data,
        Steps = steps,
        BatchSize = 4,
        Tblr = 0.2,
        WarmupSteps = 2,
        LogEvery = 1,
        EvalEvery = 3,
        EvalImages = 4,
        SampleEvery = 3,
        SampleClasses = 2,
        CheckpointEvery = 3,
        KeepCheckpoints = 10,
        Seed = 7,
    };

    /// <summary>A tokenizer folder (tiny config, weights from torch's seeded RNG) and an idx data folder.</summary>
    internal static (string Tokenizer, string Data) Inputs(TempFolder tmp, int tokenizerSeed = 1, VqVaeConfig? tok = null) =>
        (TinyModelFolder.WriteTokenizer(tmp.File($"tok{tokenizerSeed}-{tok?.VocabSize ?? 16}"), tok ?? TinyConfigs.VqVae(), tokenizerSeed),
         Directory.Exists(tmp.File("data")) ? tmp.File("data") : TinyData.WriteIdxFolder(tmp.File("data")));

    [Fact]
    public void ANewRunThatFailsWhileTokenizingLeavesNothingBehind()
    {
        using var tmp = new TempFolder();
        var (tokenizer, _) = Inputs(tmp);
        var data = TinyData.WriteImageFolderWithACutFile(tmp.File("images"), TinyConfigs.VqVae().InChannels);
        var cfg = Train(tokenizer, data) with { EvalImages = 0, SampleClasses = 0, Resize = false, Strict = true };
        var model = VarTrainer.DefaultModelConfig(TinyConfigs.VqVae(), numClasses: 2, depth: 2) with { EmbedDim = 32, NumHeads = 2 };
        var run = tmp.File("run");
        using (var t = VarTrainer.Start(run, model, cfg))
        {
            var e = Assert.Throws<VarSharpException>(() => t.Run());
            Assert.Contains("1-cut.png", e.Message);
        }
        Assert.False(Directory.Exists(run), "a run that never checkpointed must not leave a folder that blocks --out");
    }

    private static VarTrainResult Run(string run, VarTrainConfig cfg, long? stopAt = null)
    {
        using var t = VarTrainer.Start(run, Model(TinyConfigs.VqVae()), cfg);
        return t.Run(stopAtStep: stopAt);
    }

    /// <summary>Every tensor of both checkpoint files, compared bit for bit; returns how many tensors were compared.</summary>
    internal static int AssertSameCheckpoint(string a, string b)
    {
        int n = 0;
        foreach (Func<string, string> file in new[] { CheckpointWriter.ModelPath, CheckpointWriter.TrainStatePath })
        {
            var ta = SafeTensors.Load(file(a));
            var tb = SafeTensors.Load(file(b));
            Assert.Equal(ta.Keys.Order(), tb.Keys.Order());
            foreach (var (key, x) in ta)
            {
                var y = tb[key];
                Assert.True(x.shape.SequenceEqual(y.shape) && x.dtype == y.dtype, $"{file(a)} {key}: shape/dtype differ");
                bool same = x.contiguous().bytes.SequenceEqual(y.contiguous().bytes);
                Assert.True(same, $"{Path.GetFileName(file(a))} {key} differs (max |Δ| {(x.dtype == ScalarType.Float32 ? (x - y).abs().max().item<float>() : float.NaN)})");
                n++;
            }
            foreach (var t in ta.Values.Concat(tb.Values)) t.Dispose();
        }
        return n;
    }

    [Fact]
    public void SameSeedTwiceGivesBitIdenticalWeightsAndState()
    {
        using var tmp = new TempFolder();
        var (tok, data) = Inputs(tmp);
        // Both runs share one token cache: the second loads what the first computed, and still ends identical.
        var cfg = Train(tok, data) with { TokenCache = tmp.File("cache") };
        var a = Run(tmp.File("a"), cfg);
        var b = Run(tmp.File("b"), cfg);
        Assert.True(a.Finished && b.Finished);
        var fromCache = TrainLog.Read(Path.Combine(tmp.File("b"), VarTrainer.LogFile)).Single(o => o["kind"]!.GetValue<string>() == "tokens");
        Assert.True(fromCache["from_cache"]!.GetValue<bool>());
        int n = AssertSameCheckpoint(a.LastCheckpoint!, b.LastCheckpoint!);
        output.WriteLine($"{n} tensors identical; train {a.LastTrain}, held-out {a.LastEval}");

        var c = Run(tmp.File("c"), cfg with { Seed = 8 });
        using var wa = SafeTensors.Load(CheckpointWriter.ModelPath(a.LastCheckpoint!))["var.head.weight"];
        using var wc = SafeTensors.Load(CheckpointWriter.ModelPath(c.LastCheckpoint!))["var.head.weight"];
        Assert.False(wa.contiguous().bytes.SequenceEqual(wc.contiguous().bytes), "another seed should give other weights");
    }

    /// <summary>A shared token cache is keyed by the data's fingerprint: other images of the same count are tokenized anew.</summary>
    [Fact]
    public void ATokenCacheIsNotReusedForOtherDataOfTheSameSize()
    {
        using var tmp = new TempFolder();
        var (tok, data) = Inputs(tmp);
        var cfg = Train(tok, data, steps: 1) with { TokenCache = tmp.File("cache"), EvalImages = 0, SampleClasses = 0 };
        Run(tmp.File("a"), cfg);
        TinyData.WriteIdxFolder(data, seed: 2);
        Run(tmp.File("b"), cfg);
        var tokens = TrainLog.Read(Path.Combine(tmp.File("b"), VarTrainer.LogFile)).Single(o => o["kind"]!.GetValue<string>() == "tokens");
        Assert.False(tokens["from_cache"]!.GetValue<bool>());
        Assert.Equal(2, Directory.GetFiles(tmp.File("cache")).Length);
    }

    [Fact]
    public void AnAlteredTokenCacheIsIgnoredAndRecomputed()
    {
        using var tmp = new TempFolder();
        var (tok, data) = Inputs(tmp);
        var cfg = Train(tok, data, steps: 2) with { TokenCache = tmp.File("cache"), EvalImages = 0, SampleClasses = 0 };
        var a = Run(tmp.File("a"), cfg);
        var cache = Assert.Single(Directory.GetFiles(tmp.File("cache")));
        // One token id changed in place: header, shapes and metadata still look right, only the content digest can tell.
        var bytes = File.ReadAllBytes(cache);
        bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(cache, bytes);

        var messages = new List<string>();
        VarTrainResult b;
        using (var t = VarTrainer.Start(tmp.File("b"), Model(TinyConfigs.VqVae()), cfg))
            b = t.Run(e => { if (e is MessageEvent m) messages.Add(m.Text); });
        Assert.Contains(messages, m => m.Contains("ignored the token cache") && m.Contains("do not match the content digest"));
        var tokens = TrainLog.Read(Path.Combine(tmp.File("b"), VarTrainer.LogFile)).Single(o => o["kind"]!.GetValue<string>() == "tokens");
        Assert.False(tokens["from_cache"]!.GetValue<bool>());
        AssertSameCheckpoint(a.LastCheckpoint!, b.LastCheckpoint!);
        // The cache was rewritten with the right tokens and loads again.
        var c = Run(tmp.File("c"), cfg);
        Assert.True(TrainLog.Read(Path.Combine(tmp.File("c"), VarTrainer.LogFile)).Single(o => o["kind"]!.GetValue<string>() == "tokens")["from_cache"]!.GetValue<bool>());
        AssertSameCheckpoint(a.LastCheckpoint!, c.LastCheckpoint!);
    }

    /// <summary>An image folder of 24 8×8 images in 10 classes (c0 … c9), so that <see cref="Model"/> fits it.</summary>
    private static string ImageFolder(TempFolder tmp)
    {
        for (int i = 0; i < 24; i++) TinyModelFolder.WritePng(tmp.File($"images/train/c{i % 10}/{i:D2}.png"), 8, TinyConfigs.VqVae().InChannels);
        return tmp.File("images");
    }

    [Theory]
    [InlineData("precomputed", 1)]
    [InlineData("flip-views", 1)]
    [InlineData("per-batch", 1)]
    [InlineData("precomputed", 2)]
    [InlineData("flip-views", 2)]
    [InlineData("per-batch", 2)]
    [InlineData("progressive", 1)]
    public void ResumeEqualsUninterruptedRun(string tokens, int gradAccum)
    {
        using var tmp = new TempFolder();
        var (tok, data) = Inputs(tmp);
        // 6 batches per epoch: the 8 steps cross an epoch, the resume point (5) lies inside the first. With hflip on the
        // idx data a flip is the only augmentation, so both views are tokenized ahead and each sample takes the one its
        // key picks; resized image folders crop at random, so their batches are tokenized as they come (through the
        // prefetching loader). With grad_accum 2 every batch runs in two slices, whose label dropout and drop path must
        // resume exactly as well.
        var cfg = Train(tok, data, steps: 8) with { GradAccum = gradAccum };
        if (tokens == "flip-views") cfg = cfg with { Hflip = true };
        if (tokens == "per-batch") cfg = cfg with { Data = ImageFolder(tmp), Hflip = true, EvalImages = 0 };
        // Progressive training resumes in the middle of stage 1's loss ramp (step 4: weight 1, not the 0.5 of a stage's
        // first step), which must be recomputed from the step.
        if (tokens == "progressive") cfg = cfg with { Progressive = 0.8, ProgressiveStart = 0, ProgressiveWarmupSteps = 2 };
        int stopAt = tokens == "progressive" ? 4 : 5;
        bool perBatchTokens = tokens == "per-batch";
        var full = Run(tmp.File("full"), cfg);

        var part = Run(tmp.File("part"), cfg, stopAt: stopAt);
        Assert.False(part.Finished);
        Assert.Equal(stopAt, part.Step);
        VarTrainResult resumed;
        using (var t = VarTrainer.Resume(tmp.File("part")))
        {
            Assert.Equal(stopAt, t.Step);
            Assert.Equal(perBatchTokens, t.TokenizesPerBatch);
            Assert.Equal(tokens == "flip-views", t.UsesFlipViews);
            resumed = t.Run();
        }
        Assert.True(resumed.Finished);
        Assert.Equal(CheckpointWriter.StepDir(tmp.File("part"), 8), resumed.LastCheckpoint);
        int n = AssertSameCheckpoint(full.LastCheckpoint!, resumed.LastCheckpoint!);
        output.WriteLine($"{n} tensors identical after {stopAt} + resume + {8 - stopAt} steps vs 8 uninterrupted (tokens {tokens}, grad_accum {gradAccum})");

        var steps = TrainLog.Read(Path.Combine(tmp.File("part"), VarTrainer.LogFile))
            .Where(o => o["kind"]!.GetValue<string>() == "train").Select(TrainLog.StepOf).ToList();
        Assert.Equal(Enumerable.Range(1, 8).Select(i => (long)i), steps);
    }

    /// <summary>
    /// With --hflip on idx data, the precomputed views give every batch exactly the tokens that tokenizing the batch as
    /// the loader makes it (each sample flipped or not by its key) gives, and the mirrored view is cached beside the plain one.
    /// </summary>
    [Fact]
    public void FlipViewsGiveTheTokensOfTheFlippedBatches()
    {
        using var tmp = new TempFolder();
        var (tok, data) = Inputs(tmp);
        var cfg = Train(tok, data, steps: 8) with { Hflip = true, TokenCache = tmp.File("cache") };
        using var t = VarTrainer.Start(tmp.File("run"), Model(TinyConfigs.VqVae()), cfg);
        Assert.True(t.UsesFlipViews && !t.TokenizesPerBatch);
        Assert.True(t.PrepareTokens());
        Assert.Equal(2, Directory.GetFiles(tmp.File("cache"), "tokens-*.safetensors").Length);

        var set = VarSharp.Data.FashionMnist.Load(data, VarSharp.Data.DataSplit.Train, TinyConfigs.VqVae().InChannels, 8, hflip: true);
        using var loader = new VarSharp.Data.BatchLoader(set, cfg.BatchSize, cfg.Seed, new VarSharp.Data.DataPosition(0, 0), prefetch: 0);
        int flipped = 0;
        for (int b = 0; b < 8; b++)
        {
            var (labels, tokens, position) = t.NextBatch();
            var batch = loader.Make(position);
            using var x = tensor(batch.Pixels, batch.Shape);
            using var noGrad = no_grad();
            using var expected = cat(t.Tokenizer.ImageToIndices(x), 1);
            Assert.Equal(batch.Labels, labels.data<long>().ToArray());
            Assert.True(expected.shape.SequenceEqual(tokens.shape) && expected.eq(tokens).all().item<bool>(), $"batch {position}: the precomputed views differ from tokenizing the flipped batch");
            for (int i = 0; i < cfg.BatchSize; i++)
                if (set.FlipsFor(VarSharp.Data.BatchLoader.AugmentKey(cfg.Seed, position.Epoch, position.Batch * cfg.BatchSize + i)) == true) flipped++;
            labels.Dispose();
            tokens.Dispose();
        }
        Assert.InRange(flipped, 1, 31);   // both views were used
    }

    [Fact]
    public void BadInputsFailClearlyAndWriteNothing()
    {
        using var tmp = new TempFolder();
        var (tok, data) = Inputs(tmp);
        var cfg = Train(tok, data, steps: 3) with { EvalImages = 0, SampleClasses = 0 };
        var run = tmp.File("run");
        Run(run, cfg, stopAt: 3);
        var before = Snapshot(run);

        var errors = new List<string>();
        void Refused(Action act, string expected)
        {
            var e = Assert.Throws<VarSharpException>(act);
            Assert.Contains(expected, e.Message);
            errors.Add(e.Message);
        }
        // Another transformer, another recipe, a non-empty folder.
        Refused(() => VarTrainer.Resume(run, Model(TinyConfigs.VqVae(), depth: 3)), "depth");
        Refused(() => VarTrainer.Resume(run, null, cfg with { Tblr = 0.5 }), "tblr");
        Refused(() => VarTrainer.Start(run, Model(TinyConfigs.VqVae()), cfg), "not empty");
        // A tokenizer of another config, or of the same config with other weights.
        var (otherConfig, _) = Inputs(tmp, tok: TinyConfigs.VqVae() with { VocabSize = 32 });
        Refused(() => VarTrainer.Resume(run, tokenizer: otherConfig), "vocab_size");
        var (otherWeights, _) = Inputs(tmp, tokenizerSeed: 2);
        Refused(() => VarTrainer.Resume(run, tokenizer: otherWeights), "other weights");
        // A tokenizer training checkpoint is not a transformer checkpoint.
        using (var tt = TokenizerTrainer.Start(tmp.File("tokrun"), TinyConfigs.VqVae(), TinyData.TrainConfig(data, steps: 1) with { EvalImages = 0, DeadCodeEvery = 0 }))
            tt.Run();
        Refused(() => VarTrainer.Resume(tmp.File("tokrun")), "tokenizer training checkpoint");
        Assert.Equal(before, Snapshot(run));

        // Starting: a transformer that does not fit the tokenizer, the wrong class count, empty data, no tokenizer.
        Refused(() => VarTrainer.Start(tmp.File("r1"), Model(TinyConfigs.VqVae()) with { VocabSize = 32 }, cfg), "codebook");
        Refused(() => VarTrainer.Start(tmp.File("r2"), Model(TinyConfigs.VqVae()) with { NumClasses = 5 }, cfg), "num_classes 5");
        Directory.CreateDirectory(tmp.File("empty"));
        Refused(() => VarTrainer.Start(tmp.File("r3"), Model(TinyConfigs.VqVae()), cfg with { Data = tmp.File("empty") }), "No PNG or JPEG images");
        Refused(() => VarTrainer.Start(tmp.File("r4"), Model(TinyConfigs.VqVae()), cfg with { Tokenizer = tmp.File("nothing") }), "does not exist");
        foreach (var r in new[] { "r1", "r2", "r3", "r4" })
            Assert.False(Directory.Exists(tmp.File(r)) && Directory.EnumerateFileSystemEntries(tmp.File(r)).Any(), $"{r} was written");
        foreach (var e in errors) output.WriteLine(e);
    }

    [Fact]
    public void CheckpointIsASampleableBundleAndTheRunFolderIsComplete()
    {
        using var tmp = new TempFolder();
        var (tok, data) = Inputs(tmp);
        var run = tmp.File("run");
        var result = Run(run, Train(tok, data, steps: 3) with { KeepCheckpoints = 1, CheckpointEvery = 1 });
        Assert.True(result.Finished);
        Assert.NotNull(result.LastEval);
        Assert.Equal([CheckpointWriter.StepDir(run, 3)], Directory.GetDirectories(Path.Combine(run, VarTrainer.CheckpointsDir)));
        Assert.True(File.Exists(Path.Combine(run, VarTrainer.PlotFile)));
        Assert.True(File.Exists(Path.Combine(run, VarTrainer.SamplesDir, "step-0000003.png")));
        var kinds = TrainLog.Read(Path.Combine(run, VarTrainer.LogFile)).Select(o => o["kind"]!.GetValue<string>()).ToHashSet();
        Assert.Superset(new HashSet<string> { "start", "tokens", "train", "eval", "sample", "checkpoint", "end" }, kinds);
        var start = TrainLog.Read(Path.Combine(run, VarTrainer.LogFile)).First(o => o["kind"]!.GetValue<string>() == "start");
        Assert.StartsWith("0.1.0", start["varsharp"]!.GetValue<string>());   // the build, with its commit after '+'
        Assert.StartsWith("0.107", start["torchsharp"]!.GetValue<string>());
        Assert.Equal(Environment.ProcessorCount, start["cpus"]!.GetValue<int>());

        var folder = CheckpointWriter.ModelFolderOf(result.LastCheckpoint!);
        ModelBundle.Verify(folder);
        Assert.Equal("varsharp train", SafeTensors.ReadHeader(CheckpointWriter.ModelPath(result.LastCheckpoint!)).Metadata["producer"]);
        using (var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(CheckpointWriter.ConfigPath(result.LastCheckpoint!))))
            Assert.Equal(VarSharp.Data.FashionMnist.ClassNames, doc.RootElement.GetProperty("classes").EnumerateArray().Select(e => e.GetString()!).ToArray());
        using var pipe = VarPipeline.Load(folder);
        Assert.Equal(Model(TinyConfigs.VqVae()), pipe.Model.Config);
        Assert.Equal(TinyConfigs.VqVae(), pipe.Tokenizer.Config);
        var images = pipe.Generate(new SampleOptions { Classes = [0, 9], Cfg = 1.5, Seed = 3 });
        Assert.Equal(2, images.Count);
    }

    private static string Snapshot(string dir) => string.Join("\n",
        Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(f => $"{Path.GetRelativePath(dir, f)} {FileDigest.Sha256(f)} {File.GetLastWriteTimeUtc(f).Ticks}"));
}
