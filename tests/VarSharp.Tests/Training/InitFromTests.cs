using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Tests.Cli;
using VarSharp.Tests.Support;
using VarSharp.Training;
using static TorchSharp.torch;

namespace VarSharp.Tests.Training;

/// <summary>
/// Fine-tuning: a run started with init_from holds the initial model's weights before its first step (a fresh class
/// embedding with init_reset_classes), records their digest, and refuses weights that do not fit.
/// </summary>
public sealed class InitFromTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>Asserts every `prefix` tensor of the file equals the module's, except <paramref name="except"/>; returns how many matched.</summary>
    private static int AssertHolds(TorchSharp.torch.nn.Module module, string weightsFile, string prefix, string? except = null)
    {
        var file = SafeTensors.Load(weightsFile);
        try
        {
            var state = module.state_dict();
            int n = 0;
            foreach (var (key, t) in file.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)))
            {
                var name = key[prefix.Length..];
                if (name == except) continue;
                Assert.True(state[name].cpu().contiguous().bytes.SequenceEqual(t.contiguous().bytes), $"{key} was not taken from the initial model");
                n++;
            }
            return n;
        }
        finally
        {
            foreach (var t in file.Values) t.Dispose();
        }
    }

    [Fact]
    public void ATransformerRunStartsFromTheInitialWeightsOrRefusesThem()
    {
        // The initial model: 5 classes; the data: 10.
        var initial = TinyModels.WriteBundle(_temp.File("initial"));
        var weights = Path.Combine(initial, "model.safetensors");
        var (otherTokenizer, data) = VarTrainerTests.Inputs(_temp);
        var model = ModelFolder.ReadVarConfig(ModelFolder.ConfigPath(initial)) with { NumClasses = 10 };
        // The initial bundle carries its tokenizer, which is the one to fine-tune on.
        var cfg = VarTrainerTests.Train(initial, data, steps: 2) with { InitFrom = initial, EvalImages = 0, SampleClasses = 0 };

        var mismatch = Assert.Throws<VarSharpException>(() =>
            VarTrainer.Start(_temp.File("mismatch"), model, cfg with { Tokenizer = otherTokenizer, InitResetClasses = true }).Dispose());
        Assert.Contains("was trained with another tokenizer than --tokenizer", mismatch.Message);

        var e = Assert.Throws<VarSharpException>(() => VarTrainer.Start(_temp.File("refused"), model, cfg).Dispose());
        Assert.Contains("has 5 classes but this run trains 10; pass --init-reset-classes", e.Message);
        Assert.False(Directory.Exists(_temp.File("refused")));

        using (var t = VarTrainer.Start(_temp.File("run"), model, cfg with { InitResetClasses = true }))
        {
            Assert.Equal(FileDigest.Sha256(weights), t.Config.InitFromSha256);
            int n = AssertHolds(t.Model, weights, "var.", except: "class_emb.weight");
            Assert.True(n > 10, $"only {n} tensors compared");
            Assert.Equal([11L, model.EmbedDim], t.Model.state_dict()["class_emb.weight"].shape);
            Assert.True(t.Run().Finished);
        }

        // Another architecture than the initial model's: one sentence naming the tensor that does not fit.
        var wider = model with { EmbedDim = 64, NumHeads = 2 };
        var e2 = Assert.Throws<VarSharpException>(() => VarTrainer.Start(_temp.File("wider"), wider, cfg with { InitResetClasses = true }).Dispose());
        Assert.Contains($"The initial weights in {initial} do not fit the model to train", e2.Message);
    }

    [Fact]
    public void ABf16StoredBundleStartsAFloat32RunFromItsWidenedWeights()
    {
        var source = TinyModels.WriteBundle(_temp.File("source"));
        var initial = _temp.File("bf16");
        ModelConvert.StoreTransformerAs(source, initial, ScalarType.BFloat16);
        var (_, data) = VarTrainerTests.Inputs(_temp);
        var model = ModelFolder.ReadVarConfig(ModelFolder.ConfigPath(initial)) with { NumClasses = 10 };
        var cfg = VarTrainerTests.Train(initial, data, steps: 1) with { InitFrom = initial, InitResetClasses = true, EvalImages = 0, SampleClasses = 0 };
        using var t = VarTrainer.Start(_temp.File("run"), model, cfg);
        Assert.Equal(ScalarType.Float32, t.Model.DType);
        var stored = SafeTensors.Load(Path.Combine(initial, "model.safetensors"));
        try
        {
            var state = t.Model.state_dict();
            foreach (var (key, w) in stored.Where(kv => kv.Key.StartsWith("var.", StringComparison.Ordinal) && kv.Key != "var.class_emb.weight" && kv.Value.is_floating_point()))
            {
                Assert.Equal(ScalarType.BFloat16, w.dtype);
                Assert.True(state[key[4..]].eq(w.to(ScalarType.Float32)).all().item<bool>(), $"{key} is not the widened stored weight");
            }
        }
        finally
        {
            foreach (var w in stored.Values) w.Dispose();
        }
        Assert.True(t.Run().Finished);
    }

    [Fact]
    public void ATokenizerRunStartsFromTheInitialWeights()
    {
        var initial = TinyModels.WriteBundle(_temp.File("initial"));
        var cfg = TinyData.TrainConfig(TinyData.WriteIdxFolder(_temp.File("data")), steps: 1) with
        {
            InitFrom = initial, EvalImages = 0, DeadCodeEvery = 100,
        };
        using var t = TokenizerTrainer.Start(_temp.File("run"), TinyConfigs.VqVae(), cfg);
        Assert.Equal(FileDigest.Sha256(Path.Combine(initial, "model.safetensors")), t.Config.InitFromSha256);
        Assert.True(AssertHolds(t.Model, Path.Combine(initial, "model.safetensors"), "vae.", except: "quantize.ema_vocab_hit_SV") > 10);
        // Code usage is counted afresh: hits recorded at another batch size would misjudge which codes are dead.
        Assert.Equal(0f, t.Model.Quantizer.EmaVocabHits.abs().sum().item<float>());
        Assert.Equal(0, t.Model.Quantizer.RecordHit);
        using var before = t.Model.Quantizer.Codebook.weight!.detach().clone();
        Assert.True(t.Run().Finished);
        // No start-of-run re-seeding of a trained codebook: one warmup step moves each entry by about the lr, no more.
        double moved = t.Model.Quantizer.Codebook.weight!.detach().sub(before).abs().max().item<float>();
        Assert.True(moved < 1e-2, $"the codebook moved by {moved} in one step");
    }

    [Fact]
    public void TheCliFineTunesWithTheInitialArchitecture()
    {
        var initial = TinyModels.WriteBundle(_temp.File("initial"));
        var (tokenizer, data) = VarTrainerTests.Inputs(_temp);
        var run = CliRun.Of("train", "--tokenizer", initial, "--data", data, "--init-from", initial, "--init-reset-classes", "--steps", "1",
            "--batch-size", "4", "--eval-images", "0", "--sample-classes", "0", "--out", _temp.File("run"));
        Assert.True(run.ExitCode == 0, run.Output + run.Error);
        Assert.Contains("VAR depth 2, width 32, 2 heads", run.Output);   // TinyModels' architecture, not the default depth 4
        var bad = CliRun.Of("train", "--tokenizer", tokenizer, "--data", data, "--init-reset-classes", "--out", _temp.File("bad"));
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("init_reset_classes needs init_from", bad.Error);
    }
}
