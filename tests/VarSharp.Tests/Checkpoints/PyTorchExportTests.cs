using System.Text.Json.Nodes;
using VarSharp.Checkpoints;
using VarSharp.Checkpoints.Torch;
using VarSharp.Tests.Checkpoints.Torch;
using VarSharp.Tests.Cli;
using VarSharp.Tests.Support;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Checkpoints;

/// <summary>
/// `export`: model folders become vae.pth / var.pth in PyTorch's zip format. Our restricted reader must read them back
/// bit for bit; that torch.load itself does is checked by scripts/check-pytorch-export.sh against the golden .pth files.
/// </summary>
public class PyTorchExportTests(ITestOutputHelper output)
{
    private static void AssertSame(IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> actual, string what)
    {
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, t) in expected)
        {
            var a = actual[name];
            Assert.True(t.dtype == a.dtype && t.shape.SequenceEqual(a.shape), $"{what} {name}: {a.dtype} [{string.Join(",", a.shape)}] vs {t.dtype} [{string.Join(",", t.shape)}]");
            Assert.True(t.contiguous().bytes.SequenceEqual(a.contiguous().bytes), $"{what} {name}: bytes differ");
        }
    }

    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void ExportOfAGoldenCaseReadsBackAsItsReferencePthFiles(string caseName)
    {
        using var tmp = new TempFolder();
        var dir = Path.Combine(SharedData.GoldenDir, caseName);
        var run = CliRun.Of("export", "-m", dir, "-o", tmp.File("out"));
        output.WriteLine(run.Output + run.Error);
        Assert.Equal(0, run.ExitCode);
        foreach (var (file, reference) in new[] { (PyTorchExport.VaeFile, "weights_vae.pth"), (PyTorchExport.VarFile, "weights_var.pth") })
        {
            var ours = TorchCheckpoint.Load(tmp.File(Path.Combine("out", file)));
            var theirs = TorchCheckpoint.Load(Path.Combine(dir, reference));
            try
            {
                AssertSame(theirs, ours, file);
            }
            finally
            {
                MaliciousCheckpointTests.DisposeAll(ours);
                MaliciousCheckpointTests.DisposeAll(theirs);
            }
        }
        Assert.Contains("vae = VQVAE(vocab_size=", run.Output);
        Assert.Contains("var = VAR(vae_local=vae, num_classes=", run.Output);
    }

    [Fact]
    public void ABundleExportsWithDigestsAndRefusesToOverwrite()
    {
        using var tmp = new TempFolder();
        var model = TinyModels.WriteBundle(tmp.File("model"));
        var result = PyTorchExport.Run(model, tmp.File("out"));
        Assert.NotNull(result.Vae);
        Assert.NotNull(result.Var);

        var weights = SafeTensors.Load(ModelFolder.WeightsPath(model));
        try
        {
            foreach (var (prefix, file) in new[] { ("vae.", result.Vae!), ("var.", result.Var!) })
            {
                var back = TorchCheckpoint.Load(file.Path);
                try
                {
                    var expected = weights.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
                        .ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);
                    AssertSame(expected, back, file.Path);
                    Assert.Equal(expected.Count, file.Tensors);
                }
                finally
                {
                    MaliciousCheckpointTests.DisposeAll(back);
                }
                Assert.Equal(FileDigest.Sha256(file.Path), file.Sha256);
            }
        }
        finally
        {
            MaliciousCheckpointTests.DisposeAll(weights);
        }
        var report = JsonNode.Parse(File.ReadAllText(tmp.File(Path.Combine("out", PyTorchExport.ReportFile))))!;
        Assert.Equal(result.Vae!.Sha256, (string)report["files"]![PyTorchExport.VaeFile]!["sha256"]!);
        Assert.Equal(result.VqVaeCall, (string)report["vqvae_call"]!);

        // A second export into the same folder needs --force and leaves the first untouched without it.
        var before = File.ReadAllBytes(result.Vae.Path);
        var again = CliRun.Of("export", "-m", model, "-o", tmp.File("out"));
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("pass --force", again.Error);
        Assert.Equal(before, File.ReadAllBytes(result.Vae.Path));
        Assert.Equal(0, CliRun.Of("export", "-m", model, "-o", tmp.File("out"), "--force").ExitCode);

        // A tokenizer-only model exported over it leaves no var.pth of the earlier model behind.
        var tokenizer = TinyModelFolder.WriteTokenizer(tmp.File("tok"), TinyConfigs.VqVae());
        var only = PyTorchExport.Run(tokenizer, tmp.File("out"), force: true);
        Assert.Null(only.Var);
        Assert.Null(only.VarCall);
        Assert.False(File.Exists(tmp.File(Path.Combine("out", PyTorchExport.VarFile))));
        Assert.True(File.Exists(tmp.File(Path.Combine("out", PyTorchExport.ReportFile))));

        // A tampered bundle is refused before anything is written.
        var bytes = File.ReadAllBytes(ModelFolder.WeightsPath(model));
        bytes[^1] ^= 1;
        File.WriteAllBytes(ModelFolder.WeightsPath(model), bytes);
        var tampered = CliRun.Of("export", "-m", model, "-o", tmp.File("out2"));
        Assert.Equal(1, tampered.ExitCode);
        Assert.Contains("SHA-256", tampered.Error);
        Assert.False(Directory.Exists(tmp.File("out2")));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EveryDtypeAndLayoutRoundTrips(bool zip64)
    {
        using var tmp = new TempFolder();
        using var scope = NewDisposeScope();
        using var gen = new Generator(1);
        var f32 = randn([3, 5], generator: gen);
        var tensors = new List<KeyValuePair<string, Tensor>>
        {
            new("f32", f32),
            new("f64", randn([2, 2], dtype: float64, generator: gen)),
            new("f16", randn([7], generator: gen).to(float16)),
            new("bf16", randn([2, 3, 4], generator: gen).to(bfloat16)),
            new("i64", tensor(new long[] { long.MinValue, -1, 0, long.MaxValue })),
            new("i32", tensor(new[] { int.MinValue, 5, int.MaxValue })),
            new("i16", tensor(new short[] { -300, 300 })),
            new("i8", tensor(new sbyte[] { -128, 127 })),
            new("u8", tensor(new byte[] { 0, 255 })),
            new("bool", tensor(new[] { true, false, true })),
            new("scalar", tensor(3.5f)),
            new("empty", zeros([0, 4])),
            // A transposed view is written contiguous, with the strides of its own shape.
            new("transposed", f32.t()),
            new("ünïcode.name", ones(1)),
        };
        var path = tmp.File("all.pth");
        TorchCheckpointWriter.Write(path, tensors, forceZip64: zip64);
        var back = TorchCheckpoint.Load(path);
        try
        {
            AssertSame(tensors.ToDictionary(kv => kv.Key, kv => kv.Value), back, path);
        }
        finally
        {
            MaliciousCheckpointTests.DisposeAll(back);
        }
        // Every record's data starts on a 64-byte boundary, as torch.save aligns them.
        var raw = File.ReadAllBytes(path);
        int records = 0;
        for (int i = 0; i + 30 <= raw.Length; i++)
        {
            if (raw[i] != 'P' || raw[i + 1] != 'K' || raw[i + 2] != 3 || raw[i + 3] != 4) continue;
            int nameLen = BitConverter.ToUInt16(raw, i + 26), extraLen = BitConverter.ToUInt16(raw, i + 28);
            Assert.Equal(0, (i + 30 + nameLen + extraLen) % 64);
            records++;
        }
        Assert.Equal(tensors.Count + 3, records); // data.pkl, byteorder, version
    }

    [Fact]
    public void DuplicateNamesAndUnsupportedDtypesAreRefused()
    {
        using var tmp = new TempFolder();
        using var a = zeros(1);
        var dup = Assert.Throws<VarSharpException>(() => TorchCheckpointWriter.Write(tmp.File("d.pth"), [new("w", a), new("w", a)]));
        Assert.Contains("names 'w' twice", dup.Message);
        using var c = zeros([1], dtype: complex64);
        var complex = Assert.Throws<VarSharpException>(() => TorchCheckpointWriter.Write(tmp.File("c.pth"), [new("z", c)]));
        Assert.Contains("cannot hold", complex.Message);
        Assert.False(File.Exists(tmp.File("d.pth")) || File.Exists(tmp.File("c.pth")));
    }
}
