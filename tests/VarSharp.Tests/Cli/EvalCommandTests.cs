using System.Text.Json.Nodes;
using VarSharp.Tests.Support;
using Xunit.Abstractions;

namespace VarSharp.Tests.Cli;

/// <summary>
/// Tiny data (8×8 idx, 10 labels), a tiny classifier trained on it by `train-classifier`, the tiny random VAR model
/// (8×8, 5 classes) and a tiny random tokenizer, shared by the `eval` tests.
/// </summary>
public sealed class EvalFixture : IDisposable
{
    private readonly TempFolder _temp = new();

    public EvalFixture()
    {
        Data = TinyData.WriteIdxFolder(_temp.File("data"), train: 80, test: 60, size: 8);
        Model = TinyModels.WriteFolder(_temp.File("model"));
        Tokenizer = TinyModelFolder.WriteTokenizer(_temp.File("tokenizer"), TinyConfigs.VqVae());
        Classifier = _temp.File("classifier");
        TrainRun = CliRun.Of("train-classifier", "--data", Data, "--image-size", "8", "--epochs", "2", "--batch-size", "16", "--seed", "3", "--out", Classifier);
        Classifier16 = _temp.File("classifier16");
        var run16 = CliRun.Of("train-classifier", "--data", Data, "--image-size", "16", "--epochs", "1", "--batch-size", "16", "--out", Classifier16);
        if (TrainRun.ExitCode != 0 || run16.ExitCode != 0) throw new InvalidOperationException(TrainRun.Error + run16.Error);
    }

    public string Data { get; }
    public string Model { get; }
    public string Tokenizer { get; }
    public string Classifier { get; }
    public string Classifier16 { get; }
    internal CliRun TrainRun { get; }

    public string File(string name) => _temp.File(name);

    public void Dispose() => _temp.Dispose();
}

public sealed class EvalCommandTests(EvalFixture f, ITestOutputHelper output) : IClassFixture<EvalFixture>
{
    [Fact]
    public void ModelEvalSamplesWithTheModelsRecommendedFiltersUnlessGiven()
    {
        var dir = TinyModels.WriteFolder(f.File("recommending"), editConfig: root =>
        {
            root["sampling"] = JsonNode.Parse("""{"top_k": 3, "top_p": 0.8}""");
            return root;
        });
        string[] Args(params string[] extra) =>
            ["eval", "--model", dir, "--classifier", f.Classifier, "--data", f.Data, "--cfg", "1", "--per-class", "2", "--no-cache", .. extra];
        var run = CliRun.Of(Args());
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("top-k 3, top-p 0.8", run.Output);
        var given = CliRun.Of(Args("--top-k", "0", "--top-p", "0.5"));
        Assert.Contains("top-k 0, top-p 0.5", given.Output);

        // --dtype bf16 runs the transformer in bfloat16 and says so, in the output and in the JSON.
        var json = f.File("eval-bf16.json");
        var half = CliRun.Of(Args("--dtype", "bf16", "--json", json));
        Assert.True(half.ExitCode == 0, half.Error);
        Assert.Contains("transformer in bf16", half.Output);
        Assert.Equal("bf16", JsonNode.Parse(File.ReadAllText(json))!["dtype"]!.GetValue<string>());
        Assert.DoesNotContain("transformer in", run.Output);
    }

    [Fact]
    public void TrainClassifierReportsAccuracyAndWritesAVerifiedBundle()
    {
        Assert.Contains("test accuracy", f.TrainRun.Output);
        Assert.Contains("sha256", f.TrainRun.Output);
        using var clf = VarSharp.Evaluation.FashionClassifier.Load(f.Classifier);
        Assert.Equal(8, clf.ImageSize);
        Assert.Equal(10, clf.NumClasses);
        var info = clf.Info!;
        Assert.Equal("fashion-cnn", info.Kind);
        Assert.Equal(256, info.FeatureDim);
        Assert.Equal(10, info.ClassNames.Count);
        Assert.Equal(60, info.TestImages);
        Assert.Equal(80, info.TrainImages);
        Assert.Equal(2, info.Epochs);
        Assert.Equal(3UL, info.Seed);
        Assert.InRange(info.TestAccuracy!.Value, 0, 1);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(f.Classifier, "config.json")))!["classifier"]!;
        foreach (var key in new[] { "kind", "image_size", "feature_dim", "num_classes", "class_names", "test_accuracy", "seed", "epochs" })
            Assert.NotNull(config[key]);

        // Same seed (and thread count) → the same weights, byte for byte.
        var again = f.File("classifier-again");
        Assert.Equal(0, CliRun.Of("train-classifier", "--data", f.Data, "--image-size", "8", "--epochs", "2", "--batch-size", "16", "--seed", "3", "--out", again).ExitCode);
        Assert.Equal(File.ReadAllBytes(Path.Combine(f.Classifier, "model.safetensors")), File.ReadAllBytes(Path.Combine(again, "model.safetensors")));

        var exists = CliRun.Of("train-classifier", "--data", f.Data, "--image-size", "8", "--out", f.Classifier);
        Assert.Equal(1, exists.ExitCode);
        Assert.Contains("--force", exists.Error);
    }

    [Fact]
    public void TokenizerEvalReportsSaneNumbers()
    {
        var json = f.File("tok.json");
        var run = CliRun.Of("eval", "--tokenizer", f.Tokenizer, "--data", f.Data, "--images", "40", "--batch-size", "16", "--json", json);
        output.WriteLine(run.Output + run.Error);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("PSNR", run.Output);
        Assert.Contains("reference rule", run.Output);
        var r = JsonNode.Parse(File.ReadAllText(json))!;
        Assert.Equal(40, (int)r["images"]!);
        double mse = (double)r["mse"]!, psnr = (double)r["psnr_db"]!, pooled = (double)r["psnr_of_mean_mse_db"]!;
        Assert.InRange(mse, 1e-6, 4.0);
        Assert.InRange(psnr, 0, 60);
        Assert.Equal(-10 * Math.Log10(mse / 4), pooled, 6);
        Assert.True(psnr >= pooled - 1e-9, "the mean of per-image PSNRs is at least the PSNR of the mean MSE (Jensen)");
        var used = r["usage_used_percent"]!.AsArray().Select(v => (double)v!).ToArray();
        var rule = r["usage_reference_rule_percent"]!.AsArray().Select(v => (double)v!).ToArray();
        Assert.Equal(4, used.Length);
        for (int s = 0; s < 4; s++)
        {
            Assert.InRange(used[s], 100.0 / 16, 100);    // at least one code per scale
            Assert.InRange(rule[s], 0, used[s]);
        }
        Assert.InRange((double)r["usage_any_scale_percent"]!, used.Max(), 100);
    }

    [Fact]
    public void TokenizerEvalScoresReconstructionsWithAFittingClassifier()
    {
        var json = f.File("tok-rfd.json");
        var run = CliRun.Of("eval", "--tokenizer", f.Tokenizer, "--data", f.Data, "--classifier", f.Classifier, "--batch-size", "16", "--json", json);
        output.WriteLine(run.Output + run.Error);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("rFD ", run.Output);
        var r = JsonNode.Parse(File.ReadAllText(json))!;
        Assert.Equal(60, (int)r["images"]!);
        Assert.True((double)r["rfd"]! > 0, "a random tokenizer's reconstructions are far from the originals");
        // The data's classes are the classifier's, so both accuracies are reported; on the originals it is the
        // classifier's own test accuracy, which train-classifier recorded on the same 60 images.
        double original = (double)r["classifier_accuracy_original"]!;
        Assert.InRange((double)r["classifier_accuracy_reconstructed"]!, 0, 1);
        using var clf = VarSharp.Evaluation.FashionClassifier.Load(f.Classifier);
        Assert.Equal(clf.Info!.TestAccuracy!.Value, original, 6);

        var wrongSize = CliRun.Of("eval", "--tokenizer", f.Tokenizer, "--data", f.Data, "--classifier", f.Classifier16);
        Assert.Equal(1, wrongSize.ExitCode);
        Assert.Contains("takes 16×16 images but the tokenizer works on 8×8", wrongSize.Error);
    }

    [Fact]
    public void ACacheThatCannotBeWrittenIsReportedAndTheResultsStand()
    {
        var notAFolder = f.File("cache-is-a-file");
        File.WriteAllText(notAFolder, "x");
        var run = CliRun.Of("eval", "--model", f.Model, "--classifier", f.Classifier, "--data", f.Data, "--cfg", "1", "--per-class", "1",
            "--cache-dir", notAFolder);
        output.WriteLine(run.Output + run.Error);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains($"note: the classifier features were not cached in {notAFolder}: ", run.Output);
        Assert.Contains("class consistency", run.Output);
        Assert.Equal("x", File.ReadAllText(notAFolder));
    }

    [Fact]
    public void ModelEvalRunsEndToEndAndIsDeterministic()
    {
        string[] Args(string json) =>
        [
            "eval", "--model", f.Model, "--classifier", f.Classifier, "--data", f.Data, "--cfg", "1, 3", "--per-class", "2",
            "--seed", "4", "--batch-size", "3", "--cache-dir", f.File("cache"), "--json", json,
        ];
        var a = CliRun.Of(Args(f.File("a.json")));
        output.WriteLine(a.Output + a.Error);
        Assert.Equal(0, a.ExitCode);
        Assert.Contains("FD (FashionClassifier features)", a.Output);
        Assert.Contains("class consistency", a.Output);
        Assert.Contains("real (test)", a.Output);
        Assert.Contains("tokenizer round trip", a.Output);
        Assert.DoesNotContain("(cached features)", a.Output);
        var b = CliRun.Of(Args(f.File("b.json")));
        Assert.Equal(0, b.ExitCode);
        Assert.Contains("(cached features)", b.Output);

        // A cache whose content no longer matches its recorded digest is not scored against: computed afresh, same figures.
        var cache = Assert.Single(Directory.GetFiles(f.File("cache"), "features-*.safetensors"));
        var bytes = File.ReadAllBytes(cache);
        bytes[bytes.Length / 2] ^= 0x40;
        File.WriteAllBytes(cache, bytes);
        var altered = CliRun.Of(Args(f.File("c.json")));
        Assert.Equal(0, altered.ExitCode);
        Assert.DoesNotContain("(cached features)", altered.Output);
        var fresh = JsonNode.Parse(File.ReadAllText(f.File("c.json")))!["runs"]!.AsArray();
        foreach (var (ra, rc) in JsonNode.Parse(File.ReadAllText(f.File("a.json")))!["runs"]!.AsArray().Zip(fresh))
            foreach (var key in new[] { "class_consistency", "fd_fashion_classifier_features", "precision", "recall" })
                Assert.Equal((double)ra![key]!, (double)rc![key]!);

        var ja = JsonNode.Parse(File.ReadAllText(f.File("a.json")))!;
        var jb = JsonNode.Parse(File.ReadAllText(f.File("b.json")))!;
        Assert.Equal("FD (FashionClassifier features)", (string)ja["fd_name"]!);
        Assert.Equal(5, (int)ja["classes"]!);
        Assert.Equal(10, (int)ja["precision_recall_reference_images"]!);
        Assert.Equal(20, (int)ja["fd_reference_images"]!);   // 30 test images of classes 0–4, less the 10 of the baseline
        var runs = ja["runs"]!.AsArray();
        Assert.Equal(2, runs.Count);
        Assert.Equal(1.0, (double)runs[0]!["cfg"]!);
        Assert.Equal(3.0, (double)runs[1]!["cfg"]!);
        foreach (var (ra, rb) in runs.Zip(jb["runs"]!.AsArray()))
        {
            Assert.Equal(10, (int)ra!["images"]!);
            foreach (var key in new[] { "class_consistency", "precision", "recall" })
                Assert.InRange((double)ra[key]!, 0, 1);
            Assert.True((double)ra["fd_fashion_classifier_features"]! >= -1e-6);
            Assert.True((double)ra["images_per_second"]! > 0);
            foreach (var key in new[] { "class_consistency", "fd_fashion_classifier_features", "precision", "recall" })
                Assert.Equal((double)ra[key]!, (double)rb![key]!);
            Assert.Equal(ra["class_consistency_per_class"]!.ToJsonString(), rb!["class_consistency_per_class"]!.ToJsonString());
        }
        Assert.Equal(ja["baseline"]!.ToJsonString(), jb["baseline"]!.ToJsonString());
        // The round trip scores the baseline's images after the tokenizer, deterministically.
        Assert.Equal((int)ja["baseline"]!["images"]!, (int)ja["tokenizer_round_trip"]!["images"]!);
        Assert.Equal(ja["tokenizer_round_trip"]!.ToJsonString(), jb["tokenizer_round_trip"]!.ToJsonString());

        // Another seed samples other images; the earlier c.json is replaced only with --force, refused before any work.
        string[] again = ["eval", "--model", f.Model, "--classifier", f.Classifier, "--data", f.Data, "--cfg", "1", "--per-class", "2",
            "--seed", "5", "--no-cache", "--json", f.File("c.json")];
        var refused = CliRun.Of(again);
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal($"error: {f.File("c.json")} already exists; pass --force to replace it.", refused.Error.TrimEnd());
        Assert.Equal("", refused.Output);
        var c = CliRun.Of([.. again, "--force"]);
        Assert.Equal(0, c.ExitCode);
        var jc = JsonNode.Parse(File.ReadAllText(f.File("c.json")))!;
        Assert.NotEqual((double)runs[0]!["fd_fashion_classifier_features"]!, (double)jc["runs"]![0]!["fd_fashion_classifier_features"]!);
    }

    [Theory]
    [InlineData("--cfg takes comma-separated guidance scales ≥ 0 like 1,2,4 but got '1,x'.", "--cfg", "1,x")]
    [InlineData("--cfg takes comma-separated guidance scales ≥ 0 like 1,2,4 but got '1,,2'.", "--cfg", "1,,2")]
    [InlineData("--cfg takes comma-separated guidance scales ≥ 0 like 1,2,4 but got '-1'.", "--cfg", "-1")]
    [InlineData("The images per class must be at least 1 but are 0.", "--per-class", "0")]
    [InlineData("top-p must be in [0, 1] (0 is off), found 2.", "--top-p", "2")]
    public void BadModelOptionsExitOne(string expected, params string[] extra)
    {
        var run = CliRun.Of(["eval", "--model", f.Model, "--classifier", f.Classifier, "--data", f.Data, "--no-cache", .. extra]);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"error: {expected}", run.Error.TrimEnd());
    }

    [Fact]
    public void BadInputsExitOne()
    {
        var mismatch = CliRun.Of("eval", "--model", f.Model, "--classifier", f.Classifier16, "--data", f.Data, "--no-cache");
        Assert.Equal(1, mismatch.ExitCode);
        Assert.Equal("error: The model generates 8×8 images but the classifier takes 16×16; use a classifier trained at the model's image size.", mismatch.Error.TrimEnd());

        // A model whose class 0 is another class than the classifier's: consistency would compare unrelated classes.
        var renamed = TinyModels.WriteFolder(f.File("renamed"), editConfig: root =>
        {
            root["classes"] = new JsonArray("Ankle boot", "Trouser", "Pullover", "Dress", "Coat");
            return root;
        });
        var misnumbered = CliRun.Of("eval", "--model", renamed, "--classifier", f.Classifier, "--data", f.Data, "--no-cache");
        Assert.Equal(1, misnumbered.ExitCode);
        Assert.Equal("error: Class 0 is 'Ankle boot' in the model but 'T-shirt/top' for the classifier, so class consistency would compare different classes; use data, model and classifier that number their classes alike.",
            misnumbered.Error.TrimEnd());

        var noModel = CliRun.Of("eval", "--model", f.File("nowhere"), "--classifier", f.Classifier, "--data", f.Data);
        Assert.Equal(1, noModel.ExitCode);
        Assert.Contains("does not exist", noModel.Error);

        var noClassifier = CliRun.Of("eval", "--model", f.Model, "--classifier", f.File("nowhere"), "--data", f.Data);
        Assert.Equal(1, noClassifier.ExitCode);
        Assert.Equal($"error: Classifier folder {f.File("nowhere")} does not exist.", noClassifier.Error.TrimEnd());

        var notABundle = CliRun.Of("eval", "--model", f.Model, "--classifier", f.Model, "--data", f.Data);
        Assert.Equal(1, notABundle.ExitCode);
        Assert.Contains("has no manifest.json", notABundle.Error);

        var noTokenizer = CliRun.Of("eval", "--tokenizer", f.File("nowhere"), "--data", f.Data);
        Assert.Equal(1, noTokenizer.ExitCode);
        Assert.Contains("does not exist", noTokenizer.Error);

        var noData = CliRun.Of("eval", "--tokenizer", f.Tokenizer, "--data", f.File("nodata"));
        Assert.Equal(1, noData.ExitCode);
        Assert.Contains("does not exist", noData.Error);

        // An option of the other mode is refused rather than silently ignored.
        var strayCfg = CliRun.Of("eval", "--tokenizer", f.Tokenizer, "--data", f.Data, "--cfg", "2");
        Assert.Equal(1, strayCfg.ExitCode);
        Assert.Equal("error: --cfg applies to eval --model, not to what is evaluated here; leave it out.", strayCfg.Error.TrimEnd());
        var strayImages = CliRun.Of("eval", "--model", f.Model, "--classifier", f.Classifier, "--data", f.Data, "--images", "5");
        Assert.Equal(1, strayImages.ExitCode);
        Assert.Equal("error: --images applies to eval --tokenizer, not to what is evaluated here; leave it out.", strayImages.Error.TrimEnd());

        var neither = CliRun.Of("eval");
        Assert.Equal(1, neither.ExitCode);
        Assert.Contains("either --tokenizer DIR or --model DIR", neither.Error);
        var both = CliRun.Of("eval", "--tokenizer", f.Tokenizer, "--model", f.Model);
        Assert.Equal(1, both.ExitCode);
    }
}

/// <summary>The shipped classifier judging the 32×32 golden tiny model on real Fashion-MNIST images.</summary>
public sealed class ShippedClassifierEvalTests(ITestOutputHelper output)
{
    [FashionMnistGoldenFact]
    public void EvaluatesTheGoldenTinyModelWithTheShippedClassifier()
    {
        using var tmp = new TempFolder();
        var data = FashionMnistSubset.Write(tmp.File("fmnist"), train: 16, test: 400);
        var json = tmp.File("eval.json");
        var run = CliRun.Of("eval", "--model", Path.Combine(SharedData.GoldenDir, "tiny-32"), "--classifier", VarSharp.Tests.Evaluation.ShippedClassifierTests.BundleDir,
            "--data", data, "--cfg", "0,4", "--per-class", "2", "--no-cache", "--json", json);
        output.WriteLine(run.Output + run.Error);
        Assert.Equal(0, run.ExitCode);
        var r = JsonNode.Parse(File.ReadAllText(json))!;
        Assert.Equal(10, (int)r["classes"]!);
        // Real held-out images: the classifier mostly agrees with their labels; a random model's samples it does not.
        Assert.True((double)r["baseline"]!["class_consistency"]! >= 0.8, "baseline consistency");
        Assert.True((double)r["classifier"]!["measured_test_accuracy"]! >= 0.85, "measured accuracy");
        // Its tokenizer has random weights too, so the round trip destroys what the classifier sees in the real images.
        Assert.True((double)r["tokenizer_round_trip"]!["fd_fashion_classifier_features"]! > (double)r["baseline"]!["fd_fashion_classifier_features"]!);
        foreach (var cfgRun in r["runs"]!.AsArray())
            Assert.True((double)cfgRun!["fd_fashion_classifier_features"]! > (double)r["baseline"]!["fd_fashion_classifier_features"]!);
    }
}
