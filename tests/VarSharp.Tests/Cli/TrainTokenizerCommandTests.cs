using VarSharp.Tests.Support;
using VarSharp.Training;
using Xunit.Abstractions;

namespace VarSharp.Tests.Cli;

public class TrainTokenizerCommandTests(ITestOutputHelper output)
{
    // TinyConfigs.VqVae as options: 8×8 RGB, latent 4, scales 1,2,3,4.
    private static string[] Tiny(string data) =>
    [
        "--data", data, "--ch", "32", "--ch-mult", "1,2", "--z-channels", "4", "--vocab", "16", "--patch-nums", "1,2,3,4",
        "--in-channels", "3", "--batch-size", "4", "--log-every", "1", "--eval-every", "2", "--eval-images", "4",
        "--checkpoint-every", "2", "--dead-code-every", "2", "--grid-images", "2", "--warmup-steps", "1",
    ];

    /// <summary>
    /// The real process under SIGTERM (what `timeout` sends): it finishes the step, writes a checkpoint and exits 143,
    /// so `train-tokenizer … &amp;&amp; next` does not go on with an unfinished model.
    /// </summary>
    [Fact]
    public async Task ATermSignalStopsWithACheckpointAndExitCode143()
    {
        using var tmp = new TempFolder();
        var data = TinyData.WriteIdxFolder(tmp.File("data"));
        var run = tmp.File("run");
        var cli = Path.Combine(AppContext.BaseDirectory, "VarSharp.Cli.dll");
        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])["exec", cli, "train-tokenizer", .. Tiny(data), "--steps", "100000", "--out", run, "--threads", "1"])
            start.ArgumentList.Add(a);
        using var process = System.Diagnostics.Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var lines = new List<string>();
        // Wait for the first logged step (the process is then past start-up and inside the loop).
        while (await process.StandardOutput.ReadLineAsync() is { } line)
        {
            lines.Add(line);
            if (line.StartsWith("step ", StringComparison.Ordinal)) break;
        }
        using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
        var rest = process.StandardOutput.ReadToEndAsync();
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("the process did not stop within 120 s of SIGTERM");
        }
        var text = string.Join("\n", lines) + "\n" + await rest;
        output.WriteLine(text + await stderr);
        Assert.Equal(143, process.ExitCode);
        Assert.Contains("stopped at step", text);
        Assert.Contains($"continue with: varsharp train-tokenizer --resume {run}", text);
        // The checkpoint of the very step it stopped at (Tiny checkpoints every 2 steps; a stop in between writes its own).
        var stopped = System.Text.RegularExpressions.Regex.Match(text, @"stopped at step (\d+)/");
        Assert.True(stopped.Success);
        Assert.True(Directory.Exists(Path.Combine(run, TokenizerTrainer.CheckpointsDir, $"step-{long.Parse(stopped.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture):D7}")));
    }

    [Fact]
    public void TrainsStopsAndResumes()
    {
        using var tmp = new TempFolder();
        var data = TinyData.WriteIdxFolder(tmp.File("data"));
        var run = tmp.File("run");
        var first = CliRun.Of(["train-tokenizer", .. Tiny(data), "--steps", "4", "--stop-after", "2", "--out", run, "--seed", "3"]);
        output.WriteLine(first.Output + first.Error);
        Assert.Equal(0, first.ExitCode);
        Assert.Contains("stopped at step 2/4", first.Output);
        Assert.Contains("--resume", first.Output);

        var again = CliRun.Of(["train-tokenizer", .. Tiny(data), "--steps", "4", "--out", run]);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("not empty", again.Error);

        var other = CliRun.Of(["train-tokenizer", "--resume", run, "--vocab", "32"]);
        Assert.Equal(1, other.ExitCode);
        Assert.Contains("vocab_size 16", other.Error);

        var resumed = CliRun.Of(["train-tokenizer", "--resume", run]);
        output.WriteLine(resumed.Output + resumed.Error);
        Assert.Equal(0, resumed.ExitCode);
        Assert.Contains("finished at step 4/4", resumed.Output);
        Assert.Contains("held-out PSNR", resumed.Output);
        var model = CheckpointWriter.ModelFolderOf(Path.Combine(run, TokenizerTrainer.CheckpointsDir, "step-0000004"));
        Assert.Contains($"model folder {model}", resumed.Output);

        // The checkpoint is a model folder the other verbs take.
        var png = TinyModelFolder.WritePng(tmp.File("in.png"), 8, 3);
        var rec = CliRun.Of(["reconstruct", "-m", model, "-i", png, "-o", tmp.File("out.png")]);
        Assert.Equal(0, rec.ExitCode);
    }

    [Fact]
    public void BadInputsExitOne()
    {
        using var tmp = new TempFolder();
        Directory.CreateDirectory(tmp.File("empty"));
        var empty = CliRun.Of(["train-tokenizer", .. Tiny(tmp.File("empty")), "--out", tmp.File("run")]);
        Assert.Equal(1, empty.ExitCode);
        Assert.Contains("No PNG or JPEG images", empty.Error);
        Assert.False(Directory.Exists(tmp.File("run")) && Directory.EnumerateFileSystemEntries(tmp.File("run")).Any());

        var noOut = CliRun.Of(["train-tokenizer", .. Tiny(tmp.File("empty"))]);
        Assert.Equal(1, noOut.ExitCode);
        Assert.Contains("--out", noOut.Error);

        var badList = CliRun.Of(["train-tokenizer", "--patch-nums", "1,x", "--out", tmp.File("r2")]);
        Assert.Equal(1, badList.ExitCode);
        Assert.Contains("comma-separated", badList.Error);

        var noResume = CliRun.Of(["train-tokenizer", "--resume", tmp.File("empty")]);
        Assert.Equal(1, noResume.ExitCode);
        Assert.Contains("neither a checkpoint folder", noResume.Error);

        var data = TinyData.WriteIdxFolder(tmp.File("data"));
        var badLoss = CliRun.Of(["train-tokenizer", .. Tiny(data), "--disc-weight", "0.5", "--disc-loss", "wasserstein", "--out", tmp.File("r3")]);
        Assert.Equal(1, badLoss.ExitCode);
        Assert.Contains("disc_loss must be 'hinge' or 'vanilla' but is 'wasserstein'", badLoss.Error);

        // 8×8 images: two stride-2 layers and the two 4×4 stride-1 convolutions leave no logit.
        var deep = CliRun.Of(["train-tokenizer", .. Tiny(data), "--disc-weight", "0.5", "--disc-layers", "2", "--out", tmp.File("r4")]);
        Assert.Equal(1, deep.ExitCode);
        Assert.Contains("leaves no logit for 8×8 images", deep.Error);
        Assert.False(Directory.Exists(tmp.File("r4")) && Directory.EnumerateFileSystemEntries(tmp.File("r4")).Any());
    }

    [Fact]
    public void AdversarialOptionsReachTheRunAndItsLog()
    {
        using var tmp = new TempFolder();
        var data = TinyData.WriteIdxFolder(tmp.File("data"));
        var run = tmp.File("run");
        var r = CliRun.Of(["train-tokenizer", .. Tiny(data), "--steps", "3", "--out", run, "--disc-weight", "0.3", "--disc-start", "1",
            "--disc-layers", "1", "--disc-channels", "8", "--disc-loss", "vanilla", "--no-disc-adaptive", "--disc-lr", "1e-4"]);
        output.WriteLine(r.Output + r.Error);
        Assert.Equal(0, r.ExitCode);
        var (_, train, _) = TokenizerTrainer.ReadCheckpointConfig(run);
        Assert.Equal((0.3, 1, 1, 8, "vanilla", false, (double?)1e-4),
            (train.DiscWeight, train.DiscStart, train.DiscLayers, train.DiscChannels, train.DiscLoss, train.DiscAdaptive, train.DiscLr));
        var last = TrainLog.Read(Path.Combine(run, TokenizerTrainer.LogFile)).Last(o => o["kind"]!.GetValue<string>() == "train");
        // Without the adaptive weight, the generator term's weight is disc_weight itself; the reported loss stays the
        // reconstruction objective, rec + vq_weight (1) · vq, with the adversarial term logged beside it.
        Assert.Equal(0.3, last["d_weight"]!.GetValue<double>(), 6);
        double loss = last["loss"]!.GetValue<double>(), rec = last["rec_loss"]!.GetValue<double>(), vq = last["vq_loss"]!.GetValue<double>();
        Assert.Equal(rec + vq, loss, 5);
        Assert.True(double.IsFinite(last["g_loss"]!.GetValue<double>()));

        // The adversarial objective depends on the slices, so grad_accum is fixed on resume; other changes still work.
        var sliced = CliRun.Of(["train-tokenizer", "--resume", run, "--steps", "4", "--grad-accum", "2"]);
        Assert.Equal(1, sliced.ExitCode);
        Assert.True(sliced.Error.Contains("resume with --grad-accum 1"), sliced.Error);
        Assert.Equal(0, CliRun.Of(["train-tokenizer", "--resume", run, "--steps", "4"]).ExitCode);

        var never = CliRun.Of(["train-tokenizer", .. Tiny(data), "--steps", "3", "--out", tmp.File("never"), "--disc-weight", "0.3", "--disc-layers", "1"]);
        Assert.Equal(1, never.ExitCode);
        Assert.Contains("disc_start 5000 is not below steps 3", never.Error);
    }
}
