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
        var cases = new (string[] Args, string Expected)[]
        {
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
