using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Data;
using VarSharp.Evaluation;
using VarSharp.Tests.Support;
using VarSharp.Training;
using static TorchSharp.torch;

namespace VarSharp.Tests.Evaluation;

public class ClassifierBundleTests
{
    [Fact]
    public void SaveLoadRoundTripsAndRefusesTampering()
    {
        using var tmp = new TempFolder();
        using var gen = new Generator(3);
        using var model = new FashionClassifier(imageSize: 16, numClasses: 3);
        model.InitWeights(gen);
        model.Save(tmp.File("clf"), new ClassifierInfo { ClassNames = ["a", "b", "c"], TestAccuracy = 0.5, Seed = 3, Epochs = 1 });
        using var loaded = FashionClassifier.Load(tmp.File("clf"));
        Assert.Equal(16, loaded.ImageSize);
        Assert.Equal(3, loaded.NumClasses);
        Assert.Equal(["a", "b", "c"], loaded.Info!.ClassNames);
        Assert.Equal(FileDigest.Sha256(tmp.File("clf/model.safetensors")), loaded.WeightsDigest);
        using var x = rand([2, 1, 16, 16], generator: gen);
        using var a = model.call(x);
        using var b = loaded.call(x);
        Assert.True(a.eq(b).all().item<bool>());

        File.AppendAllText(tmp.File("clf/config.json"), " ");
        var e = Assert.Throws<ModelBundleException>(() => FashionClassifier.Load(tmp.File("clf")));
        Assert.Equal(ModelBundleProblem.SizeMismatch, e.Problem);
        Assert.Throws<VarSharpException>(() => new FashionClassifier(imageSize: 12));
    }

    [Fact]
    public void ANonBundleOrAForeignKeyIsRefused()
    {
        using var tmp = new TempFolder();
        var dir = tmp.File("model");
        TinyModels.WriteFolder(dir);
        var e = Assert.Throws<VarSharpException>(() => FashionClassifier.Load(dir));
        Assert.Contains("has no manifest.json", e.Message);

        using var model = new FashionClassifier(imageSize: 8, numClasses: 2);
        var tensors = model.state_dict().Select(kv => KeyValuePair.Create("classifier." + kv.Key, kv.Value)).Append(KeyValuePair.Create("var.extra", zeros(1))).ToList();
        ModelBundle.Write(tmp.File("clf"), "{\"classifier\": {\"kind\": \"fashion-cnn\", \"image_size\": 8, \"feature_dim\": 256, \"num_classes\": 2}}", tensors);
        var foreign = Assert.Throws<VarSharpException>(() => FashionClassifier.Load(tmp.File("clf")));
        Assert.Contains("var.extra", foreign.Message);
    }
}

/// <summary>The classifier shipped in models/fashion-classifier: loads (verified) and scores what it recorded.</summary>
public class ShippedClassifierTests(Xunit.Abstractions.ITestOutputHelper output)
{
    public static string BundleDir => Path.Combine(SharedData.RepoRoot, "models", "fashion-classifier");

    [FashionMnistFact]
    public void ItsAccuracyOnAThousandTestImagesMatchesTheRecordedFigure()
    {
        using var clf = FashionClassifier.Load(BundleDir);
        Assert.Equal(32, clf.ImageSize);
        Assert.Equal(FashionMnist.ClassNames, clf.Info!.ClassNames);
        double recorded = clf.Info.TestAccuracy!.Value;
        Assert.True(recorded >= 0.92, $"recorded test accuracy {recorded}");
        var test = FashionMnist.Load(FashionMnist.DefaultDirectory, DataSplit.Test, 1, 32);
        // Every tenth test image: 1,000 images spread over the whole split.
        var (x, y) = DatasetTensors.Load(test, Enumerable.Range(0, 1000).Select(i => i * 10).ToArray());
        using (x)
        using (y)
        {
            double accuracy = ClassifierTrainer.Accuracy(clf, x, y);
            output.WriteLine($"accuracy on every tenth test image: {accuracy:0.0000} (recorded on all: {recorded:0.0000})");
            Assert.InRange(accuracy, recorded - 0.01, recorded + 0.01);
        }
    }
}
