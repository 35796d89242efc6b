using VarSharp.Checkpoints;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Cli;

/// <summary>
/// Outputs never land inside a bundle (its manifest lists every file it may hold, so it would stop verifying) and never
/// replace the model they are made from; each refusal is one sentence, comes before any work, and leaves the bundle intact.
/// </summary>
public sealed class OutputPathTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void NothingIsWrittenIntoABundleOrOverItsSource()
    {
        var bundle = TinyModels.WriteBundle(_temp.File("bundle"));
        var data = TinyData.WriteIdxFolder(_temp.File("data"));
        var image = TinyModelFolder.WritePng(_temp.File("in.png"), 8, 3);
        var cases = new (string[] Args, string Expected)[]
        {
            (["reconstruct", "-m", bundle, "-i", image, "-o", Path.Combine(bundle, "rec.png")], "is inside the bundle"),
            (["tokenize", "-m", bundle, "-i", image, "-o", Path.Combine(bundle, "tokens.json")], "is inside the bundle"),
            (["train-classifier", "--data", data, "--image-size", "8", "--out", Path.Combine(bundle, "classifier")], "inside the bundle"),
            (["train", "--tokenizer", bundle, "--data", data, "--token-cache", Path.Combine(bundle, "cache"), "--steps", "1", "--batch-size", "4",
                "--out", _temp.File("run")], "is inside the bundle"),
            (["sample", "-m", bundle, "--class", "1", "-o", Path.Combine(bundle, "samples")], "is inside the bundle"),
            (["sample", "-m", bundle, "--class", "1", "-o", bundle], "is inside the bundle"),
            (["export", "-m", bundle, "-o", bundle], "is inside the bundle"),
            (["convert", "-m", bundle, "-o", Path.Combine(bundle, "bf16")], "lies inside the bundle"),
            (["convert", "-m", bundle, "-o", bundle, "--force"], "is the model being converted"),
        };
        foreach (var (args, expected) in cases)
        {
            var run = CliRun.Of(args);
            Assert.True(run.ExitCode == 1, $"{string.Join(' ', args)}: exit {run.ExitCode}, {run.Error}");
            Assert.Contains(expected, run.Error, StringComparison.Ordinal);
            Assert.Single(run.Error.TrimEnd().Split('\n'));
            ModelBundle.Verify(bundle);
        }
        Assert.Equal(["config.json", "manifest.json", "model.safetensors"], Directory.GetFileSystemEntries(bundle).Select(Path.GetFileName).Order());
    }

    /// <summary>
    /// Only VarSharp bundles count: another project's manifest.json above the output does not block it; a trailing slash
    /// on an existing bundle replaced with --force is that bundle, not a path inside it; and a checkpoint's own model
    /// may still be edited in place (recommend).
    /// </summary>
    [Fact]
    public void ForeignManifestsTrailingSlashesAndInPlaceEditsAreNotRefused()
    {
        var project = Directory.CreateDirectory(_temp.File("webapp")).FullName;
        File.WriteAllText(Path.Combine(project, "manifest.json"), """{"name": "some web app", "version": "1.0"}""");
        var inside = TinyModels.WriteBundle(Path.Combine(project, "models", "tiny"));
        var samples = CliRun.Of("sample", "-m", inside, "--class", "1", "-o", Path.Combine(project, "out"));
        Assert.True(samples.ExitCode == 0, samples.Error);

        ModelBundle.CheckOutput(Path.GetFullPath(inside) + "/", force: true);

        var checkpoint = Directory.CreateDirectory(_temp.File("run/checkpoints/step-0000010")).FullName;
        File.WriteAllBytes(Path.Combine(checkpoint, "train_state.safetensors"), [0]);
        var model = TinyModels.WriteBundle(_temp.File("checkpoint-model"));
        Directory.Move(model, Path.Combine(checkpoint, "model"));
        var edit = CliRun.Of("recommend", "-m", Path.Combine(checkpoint, "model") + "/", "--cfg", "2.5");
        Assert.True(edit.ExitCode == 0, edit.Error);
        ModelBundle.Verify(Path.Combine(checkpoint, "model"));
    }

    [Fact]
    public void ABundleIsNotWrittenOverATrainingCheckpointsModel()
    {
        var bundle = TinyModels.WriteBundle(_temp.File("bundle"));
        var checkpoint = Directory.CreateDirectory(_temp.File("run/checkpoints/step-0000010")).FullName;
        File.WriteAllBytes(Path.Combine(checkpoint, "train_state.safetensors"), [0]);
        var e = Assert.Throws<ModelBundleException>(() => ModelBundle.CheckOutput(Path.Combine(checkpoint, "model"), force: true));
        Assert.Contains("is the model of the training checkpoint", e.Message, StringComparison.Ordinal);
        Assert.Equal(ModelBundleProblem.OutputExists, e.Problem);
        ModelBundle.Verify(bundle);
    }
}
