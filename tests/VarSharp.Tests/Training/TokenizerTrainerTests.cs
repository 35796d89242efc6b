using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Tests.Cli;
using VarSharp.Tests.Support;
using VarSharp.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Training;

/// <summary>Runs of a tiny tokenizer on tiny idx data: determinism, exact resume, refusal to overwrite or mix configs.</summary>
public class TokenizerTrainerTests(ITestOutputHelper output)
{
    private static string Final(string run, int step) => Path.Combine(run, TokenizerTrainer.CheckpointsDir, $"step-{step:D7}");

    private static TrainResult Train(string run, TokenizerTrainConfig cfg, long? stopAt = null)
    {
        using var t = TokenizerTrainer.Start(run, TinyConfigs.VqVae(), cfg);
        return t.Run(stopAtStep: stopAt);
    }

    /// <summary>Every tensor of both checkpoint files, compared bit for bit; returns how many tensors were compared.</summary>
    private static int AssertSameCheckpoint(string a, string b)
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
        var cfg = TinyData.TrainConfig(TinyData.WriteIdxFolder(tmp.File("data")));
        var a = Train(tmp.File("a"), cfg);
        var b = Train(tmp.File("b"), cfg);
        Assert.True(a.Finished && b.Finished);
        int n = AssertSameCheckpoint(a.LastCheckpoint!, b.LastCheckpoint!);
        output.WriteLine($"{n} tensors identical; final PSNR {a.LastPsnr:0.00} dB, usage {string.Join(",", a.UsagePercent.Select(u => u.ToString("0")))}");

        var c = Train(tmp.File("c"), cfg with { Seed = 8 });
        using var wa = SafeTensors.Load(CheckpointWriter.ModelPath(a.LastCheckpoint!))["vae.decoder.conv_out.weight"];
        using var wc = SafeTensors.Load(CheckpointWriter.ModelPath(c.LastCheckpoint!))["vae.decoder.conv_out.weight"];
        Assert.False(wa.contiguous().bytes.SequenceEqual(wc.contiguous().bytes), "another seed should give other weights");
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(1, true)]
    [InlineData(2, true)]
    public void ResumeEqualsUninterruptedRun(int gradAccum, bool adversarial)
    {
        using var tmp = new TempFolder();
        // Remedy every 2 steps (ratio 1: codes below average use are re-seeded, so it always acts), checkpoint at 3: the
        // resume point (5) falls between two remedies, inside an epoch (6 batches). With the adversarial loss, the
        // discriminator starts at step 2, so the resumed part continues its weights, BatchNorm statistics and optimizer.
        var cfg = TinyData.TrainConfig(TinyData.WriteIdxFolder(tmp.File("data")), steps: 8) with { CheckpointEvery = 3, DeadCodeRatio = 1.0, GradAccum = gradAccum };
        if (adversarial) cfg = cfg with { DiscWeight = 0.5, DiscStart = 2, DiscLayers = 1, DiscChannels = 8 };
        var full = Train(tmp.File("full"), cfg);

        var part = Train(tmp.File("part"), cfg, stopAt: 5);
        Assert.False(part.Finished);
        Assert.Equal(5, part.Step);
        TrainResult resumed;
        using (var t = TokenizerTrainer.Resume(tmp.File("part")))
        {
            Assert.Equal(5, t.Step);
            resumed = t.Run();
        }
        Assert.True(resumed.Finished);
        Assert.Equal(Final(tmp.File("part"), 8), resumed.LastCheckpoint);
        int n = AssertSameCheckpoint(full.LastCheckpoint!, resumed.LastCheckpoint!);
        output.WriteLine($"{n} tensors identical after 5 + resume + 3 steps vs 8 uninterrupted (grad_accum {gradAccum})");

        // The log of the resumed run has every step once.
        var steps = TrainLog.Read(Path.Combine(tmp.File("part"), TokenizerTrainer.LogFile))
            .Where(o => o["kind"]!.GetValue<string>() == "train").Select(TrainLog.StepOf).ToList();
        Assert.Equal(Enumerable.Range(1, 8).Select(i => (long)i), steps);
        if (adversarial)
        {
            // The adversarial figures are logged from disc_start on, and the checkpoint carries the discriminator.
            var dLoss = TrainLog.Read(Path.Combine(tmp.File("part"), TokenizerTrainer.LogFile))
                .Where(o => o["kind"]!.GetValue<string>() == "train").Select(o => (Step: TrainLog.StepOf(o), D: o["d_loss"])).ToList();
            Assert.All(dLoss, l => Assert.Equal(l.Step > 2, l.D is not null));
            var state = SafeTensors.Load(CheckpointWriter.TrainStatePath(resumed.LastCheckpoint!));
            var keys = state.Keys.ToList();
            foreach (var t in state.Values) t.Dispose();
            Assert.Contains("disc.main.0.weight", keys);
            Assert.Contains("disc_optim.exp_avg.main.0.weight", keys);
            Assert.Contains("disc.main.3.running_mean", keys);
        }
    }

    /// <summary>
    /// Dropout draws from the run's own generator: the masks follow the seed and nothing else (not torch's process-wide
    /// generator, which the test disturbs between runs), and a resume continues them exactly.
    /// </summary>
    [Fact]
    public void DropoutFollowsTheSeedAndResumesExactly()
    {
        using var tmp = new TempFolder();
        var model = TinyConfigs.VqVae() with { Dropout = 0.3 };
        var cfg = TinyData.TrainConfig(TinyData.WriteIdxFolder(tmp.File("data")), steps: 6) with { CheckpointEvery = 3 };
        TrainResult Run(string dir, VqVaeConfig m, long? stopAt = null)
        {
            using var t = TokenizerTrainer.Start(tmp.File(dir), m, cfg);
            return t.Run(stopAtStep: stopAt);
        }

        var a = Run("a", model);
        manual_seed(12345);
        using (rand(1000)) { }
        var b = Run("b", model);
        int n = AssertSameCheckpoint(a.LastCheckpoint!, b.LastCheckpoint!);

        var part = Run("part", model, stopAt: 4);
        Assert.Equal(4, part.Step);
        using (rand(777)) { }
        TrainResult resumed;
        using (var t = TokenizerTrainer.Resume(tmp.File("part"))) resumed = t.Run();
        AssertSameCheckpoint(a.LastCheckpoint!, resumed.LastCheckpoint!);

        var state = SafeTensors.Load(CheckpointWriter.TrainStatePath(a.LastCheckpoint!));
        bool saved = state.ContainsKey("rng.dropout");
        foreach (var x in state.Values) x.Dispose();
        Assert.True(saved, "the checkpoint should carry the dropout generator's state");

        // The masks act: without dropout the same seed ends elsewhere.
        var plain = Run("plain", model with { Dropout = 0 });
        using var wa = SafeTensors.Load(CheckpointWriter.ModelPath(a.LastCheckpoint!))["vae.decoder.conv_out.weight"];
        using var wp = SafeTensors.Load(CheckpointWriter.ModelPath(plain.LastCheckpoint!))["vae.decoder.conv_out.weight"];
        Assert.False(wa.contiguous().bytes.SequenceEqual(wp.contiguous().bytes), "dropout 0.3 should change the trained weights");
        output.WriteLine($"{n} tensors identical across two seeded runs and a resume at step 4, with dropout 0.3");
    }

    /// <summary>A resume on data of the same size but other content is refused before anything is written.</summary>
    [Fact]
    public void ResumeOnOtherDataOfTheSameSizeIsRefused()
    {
        using var tmp = new TempFolder();
        var data = TinyData.WriteIdxFolder(tmp.File("data"));
        var cfg = TinyData.TrainConfig(data, steps: 6);
        var part = Train(tmp.File("run"), cfg, stopAt: 3);
        Assert.Equal(3, part.Step);
        TinyData.WriteIdxFolder(data, seed: 2);
        var before = Directory.GetFiles(tmp.File("run"), "*", SearchOption.AllDirectories).Select(f => (f, File.GetLastWriteTimeUtc(f))).ToList();

        var e = Assert.Throws<VarSharpException>(() => TokenizerTrainer.Resume(tmp.File("run")).Dispose());
        Assert.Contains("was trained on other images than Fashion-MNIST train", e.Message, StringComparison.Ordinal);
        Assert.Contains("the data changed", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Directory.GetFiles(tmp.File("run"), "*", SearchOption.AllDirectories).Select(f => (f, File.GetLastWriteTimeUtc(f))).ToList());

        // The data put back as it was resumes.
        TinyData.WriteIdxFolder(data, seed: 1);
        using var t = TokenizerTrainer.Resume(tmp.File("run"));
        Assert.Equal(3, t.Step);
    }

    [Fact]
    public void ResumeFromAnotherConfigFailsAndWritesNothing()
    {
        using var tmp = new TempFolder();
        var cfg = TinyData.TrainConfig(TinyData.WriteIdxFolder(tmp.File("data")), steps: 3) with { EvalImages = 0 };
        var run = tmp.File("run");
        Train(run, cfg, stopAt: 3);
        var before = Snapshot(run);

        var e1 = Assert.Throws<VarSharpException>(() => TokenizerTrainer.Resume(run, TinyConfigs.VqVae() with { Ch = 64 }));
        Assert.Contains("ch", e1.Message);
        var e2 = Assert.Throws<VarSharpException>(() => TokenizerTrainer.Resume(run, null, cfg with { Lr = 1e-2 }));
        Assert.Contains("lr", e2.Message);
        var e3 = Assert.Throws<VarSharpException>(() => TokenizerTrainer.Start(run, TinyConfigs.VqVae(), cfg));
        Assert.Contains("not empty", e3.Message);
        Assert.Equal(before, Snapshot(run));
        output.WriteLine(e1.Message);
        output.WriteLine(e2.Message);
        output.WriteLine(e3.Message);
    }

    [Fact]
    public void AnAlteredTrainStateIsRefusedAndAnUndigestedOneLoadsWithANote()
    {
        using var tmp = new TempFolder();
        var cfg = TinyData.TrainConfig(TinyData.WriteIdxFolder(tmp.File("data")), steps: 4) with { EvalImages = 0 };
        var run = tmp.File("run");
        var ckpt = Train(run, cfg, stopAt: 3).LastCheckpoint!;
        var state = CheckpointWriter.TrainStatePath(ckpt);
        var digestFile = Path.Combine(ckpt, CheckpointWriter.TrainStateDigestFile);
        // sha256sum's format, so `sha256sum -c train_state.sha256` checks it by hand.
        Assert.Equal($"{FileDigest.Sha256(state)}  {CheckpointWriter.TrainStateFile}\n", File.ReadAllText(digestFile));
        var verified = CliRun.Of("verify", "-m", ckpt);
        Assert.Equal(0, verified.ExitCode);
        Assert.Contains("a training checkpoint; train_state.safetensors matches train_state.sha256", verified.Output);
        Assert.Contains("files match their manifest", verified.Output);

        // One bit of one optimizer moment: the file still parses, only the digest can tell.
        var original = File.ReadAllBytes(state);
        var altered = (byte[])original.Clone();
        altered[^5] ^= 0x01;
        File.WriteAllBytes(state, altered);
        var before = Snapshot(run);
        var e = Assert.Throws<VarSharpException>(() => TokenizerTrainer.Resume(run));
        Assert.Contains("so the train state is corrupt or was altered; resume from another checkpoint.", e.Message);
        var refused = CliRun.Of("verify", "-m", ckpt);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("so the train state is corrupt or was altered", refused.Error);
        Assert.Equal(before, Snapshot(run));

        // Checkpoints from before the digest existed still resume, and the log says they were not verified.
        File.WriteAllBytes(state, original);
        File.Delete(digestFile);
        using (var t = TokenizerTrainer.Resume(run)) Assert.True(t.Run().Finished);
        var start = TrainLog.Read(Path.Combine(run, TokenizerTrainer.LogFile)).Last(o => o["kind"]!.GetValue<string>() == "start");
        Assert.Contains("loaded unverified", start["note"]!.GetValue<string>());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ANewRunThatFailsBeforeItsFirstCheckpointLeavesNothingBehind(bool folderExisted)
    {
        using var tmp = new TempFolder();
        var data = TinyData.WriteImageFolderWithACutFile(tmp.File("data"), TinyConfigs.VqVae().InChannels);
        var cfg = TinyData.TrainConfig(data, steps: 4) with { EvalImages = 0, Resize = false, Strict = true, DeadCodeEvery = 0 };
        var run = tmp.File("run");
        if (folderExisted) Directory.CreateDirectory(run);

        using (var strict = TokenizerTrainer.Start(run, TinyConfigs.VqVae(), cfg))
        {
            var e = Assert.Throws<VarSharpException>(() => strict.Run());
            Assert.Contains("1-cut.png", e.Message);
        }
        // Nothing that blocks --out is left: the folder is gone, or (when it was there before) empty.
        Assert.Equal(folderExisted, Directory.Exists(run));
        if (folderExisted) Assert.Empty(Directory.EnumerateFileSystemEntries(run));

        // The same folder takes a new run at once; without strict mode the file is skipped and counted once.
        var r = Train(run, cfg with { Strict = false });
        Assert.True(r.Finished);
        var end = TrainLog.Read(Path.Combine(run, TokenizerTrainer.LogFile)).Last(o => o["kind"]!.GetValue<string>() == "end");
        Assert.StartsWith("0 unreadable files skipped, 1 files that failed to decode", end["data_issues"]!.GetValue<string>());
    }

    [Fact]
    public void RunFolderHasLogPlotGridAndLoadableModel()
    {
        using var tmp = new TempFolder();
        var cfg = TinyData.TrainConfig(TinyData.WriteIdxFolder(tmp.File("data")), steps: 3) with { KeepCheckpoints = 1, CheckpointEvery = 1 };
        var run = tmp.File("run");
        var result = Train(run, cfg);
        Assert.True(File.Exists(Path.Combine(run, TokenizerTrainer.LogFile)));
        Assert.True(File.Exists(Path.Combine(run, TokenizerTrainer.PlotFile)));
        Assert.True(File.Exists(Path.Combine(run, TokenizerTrainer.SamplesDir, "recon-step-0000003.png")));
        Assert.Equal([Final(run, 3)], Directory.GetDirectories(Path.Combine(run, TokenizerTrainer.CheckpointsDir)));
        var kinds = TrainLog.Read(Path.Combine(run, TokenizerTrainer.LogFile)).Select(o => o["kind"]!.GetValue<string>()).ToList();
        Assert.Contains("eval", kinds);
        Assert.Contains("remedy", kinds);
        using var vae = ModelFolder.LoadTokenizer(CheckpointWriter.ModelFolderOf(result.LastCheckpoint!));
        ModelBundle.Verify(CheckpointWriter.ModelFolderOf(result.LastCheckpoint!));
        Assert.Equal(TinyConfigs.VqVae(), vae.Config);
        Assert.True(result.LastPsnr > 0);
    }

    private static string Snapshot(string dir) => string.Join("\n",
        Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(f => $"{Path.GetRelativePath(dir, f)} {FileDigest.Sha256(f)} {File.GetLastWriteTimeUtc(f).Ticks}"));
}
