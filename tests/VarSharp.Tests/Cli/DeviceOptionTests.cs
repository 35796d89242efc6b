using VarSharp.Checkpoints;
using VarSharp.Cli.Commands;
using VarSharp.Tests.Support;
using VarSharp.Tests.Training;
using VarSharp.Training;
using static TorchSharp.torch;

namespace VarSharp.Tests.Cli;

/// <summary>
/// --device on every verb that computes: cpu runs, a device this CPU-only build cannot give is one sentence and exit 1,
/// and a training checkpoint records the device type its generator state belongs to.
/// </summary>
public sealed class DeviceOptionTests(TinyModelFolderFixture model) : IClassFixture<TinyModelFolderFixture>, IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    private static void OneSentence(CliRun run, string expected)
    {
        Assert.Equal(1, run.ExitCode);
        var line = Assert.Single(run.Error.TrimEnd().Split('\n'));
        Assert.Contains(expected, line);
    }

    [Fact]
    public void CpuRunsAndUnavailableOrUnknownDevicesAreRefused()
    {
        var ok = CliRun.Of("sample", "-m", model.Dir, "--class", "1", "-n", "1", "--device", "CPU", "-o", _temp.File("cpu"));
        Assert.Equal(0, ok.ExitCode);
        Assert.True(File.Exists(Path.Combine(_temp.File("cpu"), "grid.png")));

        // This build has no CUDA (TorchSharp-cpu); on a CUDA build the same command line would run there.
        Assert.False(TorchSharp.torch.cuda.is_available());
        var image = TinyModelFolder.WritePng(_temp.File("in.png"), 8, 3);
        foreach (var args in new[]
                 {
                     new[] { "sample", "-m", model.Dir, "--class", "1", "-o", _temp.File("gpu") },
                     ["reconstruct", "-m", model.Dir, "-i", image, "-o", _temp.File("r.png")],
                     ["serve", "--model", "tiny=" + model.Dir],
                     ["train-tokenizer", "--out", _temp.File("run")],
                 })
        {
            OneSentence(CliRun.Of([.. args, "--device", "cuda:1"]), "--device cuda:1 needs a CUDA build of TorchSharp and a GPU");
        }
        Assert.False(Directory.Exists(_temp.File("gpu")) || Directory.Exists(_temp.File("run")) || File.Exists(_temp.File("r.png")));

        OneSentence(CliRun.Of("sample", "-m", model.Dir, "--device", "tpu", "-o", _temp.File("x")), "--device must be cpu, cuda or cuda:N but is 'tpu'.");
        OneSentence(CliRun.Of("sample", "-m", model.Dir, "--device", "cuda:-1", "-o", _temp.File("x")), "--device must be cpu, cuda or cuda:N but is 'cuda:-1'.");
        Assert.Equal(TorchSharp.DeviceType.CPU, DeviceOption.Resolve(null).type);

        var bf16 = CliRun.Of("sample", "-m", model.Dir, "--class", "1", "-n", "2", "--dtype", "bf16", "-o", _temp.File("bf16"));
        Assert.True(bf16.ExitCode == 0, bf16.Error);
        Assert.Equal(2, Directory.GetFiles(_temp.File("bf16"), "00?-class1.png").Length);
        OneSentence(CliRun.Of("sample", "-m", model.Dir, "--dtype", "int8", "-o", _temp.File("x")), "--dtype must be f32, bf16 or f16 but is 'int8'.");
    }

    [Fact]
    public void ACheckpointRecordsItsDeviceAndRefusesToResumeOnAnother()
    {
        var cfg = TinyData.TrainConfig(TinyData.WriteIdxFolder(_temp.File("data")), steps: 2) with { EvalImages = 0 };
        string ckpt;
        using (var t = TokenizerTrainer.Start(_temp.File("run"), TinyConfigs.VqVae(), cfg))
            ckpt = t.Run().LastCheckpoint!;
        var metadata = SafeTensors.ReadHeader(CheckpointWriter.TrainStatePath(ckpt)).Metadata!;
        Assert.Equal("cpu", metadata[TrainDevice.MetadataKey]);
        TrainDevice.CheckResume(metadata, CPU, ckpt);
        var gpu = new Device(TorchSharp.DeviceType.CUDA, 0);
        var e1 = Assert.Throws<VarSharpException>(() => TokenizerTrainer.Resume(ckpt, device: gpu));
        Assert.Contains("was trained on cpu and its random-generator state cannot move to cuda; resume it with --device cpu.", e1.Message);

        var (tok, data) = VarTrainerTests.Inputs(_temp);
        string varCkpt;
        using (var t = VarTrainer.Start(_temp.File("var"), VarTrainerTests.Model(TinyConfigs.VqVae()),
                   VarTrainerTests.Train(tok, data, steps: 2) with { EvalImages = 0, SampleClasses = 0 }))
            varCkpt = t.Run().LastCheckpoint!;
        Assert.Equal("cpu", SafeTensors.ReadHeader(CheckpointWriter.TrainStatePath(varCkpt)).Metadata![TrainDevice.MetadataKey]);
        var e2 = Assert.Throws<VarSharpException>(() => VarTrainer.Resume(varCkpt, device: gpu));
        Assert.Contains("was trained on cpu and its random-generator state cannot move to cuda", e2.Message);
        Assert.Single(Directory.GetDirectories(Path.Combine(_temp.File("var"), VarTrainer.CheckpointsDir)));

        var fromGpu = new Dictionary<string, string>(metadata) { [TrainDevice.MetadataKey] = "cuda" };
        var e = Assert.Throws<VarSharpException>(() => TrainDevice.CheckResume(fromGpu, CPU, ckpt));
        Assert.Equal($"The checkpoint {ckpt} was trained on cuda and its random-generator state cannot move to cpu; resume it with --device cuda.", e.Message);
        // Checkpoints written before the device was recorded were all trained on the CPU.
        TrainDevice.CheckResume(new Dictionary<string, string>(), CPU, ckpt);
    }
}
