using VarSharp.Tests.Support;
using VarSharp.Training;
using Xunit.Abstractions;

namespace VarSharp.Tests.Cli;

public class TrainCommandTests(ITestOutputHelper output)
{
    // A tiny transformer (depth 2, width 32) on TinyConfigs.VqVae's tokens.
    private static string[] Tiny(string tokenizer, string data) =>
    [
        "--tokenizer", tokenizer, "--data", data, "--depth", "2", "--embed-dim", "32", "--num-heads", "2", "--batch-size", "4",
        "--tblr", "0.2", "--warmup-steps", "1", "--log-every", "1", "--eval-every", "2", "--eval-images", "4",
        "--sample-every", "2", "--sample-classes", "2", "--checkpoint-every", "2",
    ];

    [Fact]
    public void TrainsStopsResumesAndTheCheckpointSamples()
    {
        using var tmp = new TempFolder();
        var tok = TinyModelFolder.WriteTokenizer(tmp.File("tok"), TinyConfigs.VqVae());
        var data = TinyData.WriteIdxFolder(tmp.File("data"));
        var run = tmp.File("run");
        var first = CliRun.Of(["train", .. Tiny(tok, data), "--steps", "4", "--stop-after", "2", "--out", run, "--seed", "3"]);
        output.WriteLine(first.Output + first.Error);
        Assert.Equal(0, first.ExitCode);
        Assert.Contains("tokenizing 24 training images", first.Output);
        Assert.Contains("held-out (4 images)", first.Output);
        Assert.Contains("stopped at step 2/4", first.Output);
        Assert.Contains("continue with: varsharp train --resume", first.Output);

        var again = CliRun.Of(["train", .. Tiny(tok, data), "--steps", "4", "--out", run]);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("not empty", again.Error);

        var other = CliRun.Of(["train", "--resume", run, "--depth", "3"]);
        Assert.Equal(1, other.ExitCode);
        Assert.Contains("depth 2", other.Error);

        // Gradient accumulation may change on resume (a machine with less memory): same step, other summation order.
        var resumed = CliRun.Of(["train", "--resume", run, "--tokenizer", tok, "--grad-accum", "2"]);
        output.WriteLine(resumed.Output + resumed.Error);
        Assert.Equal(0, resumed.ExitCode);
        Assert.Contains("batch 4 in 2 slices", resumed.Output);
        // Without --threads a resume takes the checkpoint's thread count (recorded in its train state).
        int stored = CheckpointWriter.StoredThreads(CheckpointWriter.StepDir(run, 2))!.Value;
        Assert.Contains($"threads: {stored}, as the checkpoint was trained", resumed.Output);
        Assert.Contains("loaded the token pyramids", resumed.Output);
        Assert.Contains("finished at step 4/4", resumed.Output);
        var model = CheckpointWriter.ModelFolderOf(CheckpointWriter.StepDir(run, 4));
        Assert.Contains($"model folder {model}", resumed.Output);

        // The checkpoint's model folder is what `sample` takes.
        var sample = CliRun.Of(["sample", "-m", model, "--class", "1", "-n", "2", "--cfg", "1.5", "-o", tmp.File("samples")]);
        output.WriteLine(sample.Output + sample.Error);
        Assert.Equal(0, sample.ExitCode);
        Assert.True(File.Exists(Path.Combine(tmp.File("samples"), "grid.png")));
    }

    [Fact]
    public void ProgressiveTrainingTakesTheReferenceDecayUnlessOneIsGiven()
    {
        using var tmp = new TempFolder();
        var tok = TinyModelFolder.WriteTokenizer(tmp.File("tok"), TinyConfigs.VqVae());
        var data = TinyData.WriteIdxFolder(tmp.File("data"));
        string DecayOf(string run) => VarTrainer.ReadCheckpointConfig(run).Train.Decay;

        var pg = CliRun.Of(["train", .. Tiny(tok, data), "--steps", "2", "--progressive", "0.5", "--progressive-start", "1", "--progressive-warmup", "3", "--out", tmp.File("a")]);
        output.WriteLine(pg.Output + pg.Error);
        Assert.Equal(0, pg.ExitCode);
        Assert.Equal("lin0.5", DecayOf(tmp.File("a")));
        var stored = VarTrainer.ReadCheckpointConfig(tmp.File("a")).Train;
        Assert.Equal((0.5, 1, 3.0), (stored.Progressive, stored.ProgressiveStart, stored.ProgressiveWarmupSteps!.Value));
        Assert.Contains("prog_scale", File.ReadAllText(Path.Combine(tmp.File("a"), VarTrainer.LogFile)));
        // Two steps after one warmup step, from scale 1 of four: both steps in the first stage, at full weight.
        Assert.Contains("scales 0-1 (w 1.00)", pg.Output);

        var given = CliRun.Of(["train", .. Tiny(tok, data), "--steps", "1", "--progressive", "0.5", "--progressive-start", "2", "--decay", "cos", "--out", tmp.File("b")]);
        output.WriteLine(given.Output + given.Error);
        Assert.Equal(0, given.ExitCode);
        Assert.Equal("cos", DecayOf(tmp.File("b")));

        var bad = CliRun.Of(["train", .. Tiny(tok, data), "--progressive", "1.5", "--out", tmp.File("c")]);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("progressive must lie in [0, 1]", bad.Error);
        Assert.False(Directory.Exists(tmp.File("c")));
    }

    [Fact]
    public void BadInputsExitOne()
    {
        using var tmp = new TempFolder();
        var tok = TinyModelFolder.WriteTokenizer(tmp.File("tok"), TinyConfigs.VqVae());
        Directory.CreateDirectory(tmp.File("empty"));

        var noTokenizer = CliRun.Of(["train", "--out", tmp.File("r1")]);
        Assert.Equal(1, noTokenizer.ExitCode);
        Assert.Contains("--tokenizer", noTokenizer.Error);

        var noOut = CliRun.Of(["train", "--tokenizer", tok]);
        Assert.Equal(1, noOut.ExitCode);
        Assert.Contains("--out", noOut.Error);

        var empty = CliRun.Of(["train", .. Tiny(tok, tmp.File("empty")), "--out", tmp.File("r2")]);
        Assert.Equal(1, empty.ExitCode);
        Assert.Contains("No PNG or JPEG images", empty.Error);
        Assert.False(Directory.Exists(tmp.File("r2")));

        var tooManySlices = CliRun.Of(["train", .. Tiny(tok, tmp.File("empty")), "--grad-accum", "5", "--out", tmp.File("r4")]);
        Assert.Equal(1, tooManySlices.ExitCode);
        Assert.Contains("grad_accum must lie in [1, batch_size = 4] but is 5", tooManySlices.Error);
        Assert.False(Directory.Exists(tmp.File("r4")));

        var notATokenizer = CliRun.Of(["train", "--tokenizer", tmp.File("empty"), "--out", tmp.File("r3")]);
        Assert.Equal(1, notATokenizer.ExitCode);
        Assert.Contains("config.json", notATokenizer.Error);

        var noResume = CliRun.Of(["train", "--resume", tmp.File("empty")]);
        Assert.Equal(1, noResume.ExitCode);
        Assert.Contains("neither a checkpoint folder", noResume.Error);
    }
}
