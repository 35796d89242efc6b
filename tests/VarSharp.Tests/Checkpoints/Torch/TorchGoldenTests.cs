using VarSharp.Checkpoints;
using VarSharp.Checkpoints.Torch;
using VarSharp.Parity;
using VarSharp.Tests.Cli;
using VarSharp.Tests.Support;
using Xunit.Abstractions;

namespace VarSharp.Tests.Checkpoints.Torch;

/// <summary>The real torch.save state dicts of every golden case load through the safe reader, bit for bit.</summary>
public class TorchGoldenTests(ITestOutputHelper output)
{
    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void PthTensorsAreBitIdenticalToTheSafetensorsWeights(string caseName)
    {
        var dir = Path.Combine(SharedData.GoldenDir, caseName);
        var fromPth = GoldenPthWeights.Load(dir);
        var reference = SafeTensors.Load(Path.Combine(dir, "weights.safetensors"));
        try
        {
            Assert.Equal(reference.Keys.Order(StringComparer.Ordinal), fromPth.Keys.Order(StringComparer.Ordinal));
            foreach (var (name, expected) in reference)
            {
                var actual = fromPth[name];
                Assert.Equal(expected.dtype, actual.dtype);
                Assert.Equal(expected.shape, actual.shape);
                Assert.True(actual.is_contiguous());
                Assert.True(expected.bytes.SequenceEqual(actual.bytes), $"{caseName}: {name} differs");
            }
            // The layout pass agrees with what was loaded, in pickle order.
            var layout = TorchCheckpoint.ReadLayout(Path.Combine(dir, GoldenPthWeights.VarFile));
            Assert.Equal(fromPth.Keys.Where(k => k.StartsWith("var.", StringComparison.Ordinal)), layout.Select(l => "var." + l.Name));
        }
        finally
        {
            MaliciousCheckpointTests.DisposeAll(fromPth);
            MaliciousCheckpointTests.DisposeAll(reference);
        }
    }

    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void TokenizerGoldenTensorsPassWithWeightsFromPth(string caseName)
    {
        using var gc = GoldenCase.Open(Path.Combine(SharedData.GoldenDir, caseName), GoldenPthWeights.Load);
        var rows = GoldenRunner.Run(gc);
        var tokenizerRows = rows.Where(r => r.Name.StartsWith("vae.", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(tokenizerRows);
        var bad = tokenizerRows.Where(r => r.Status != GoldenStatus.Pass).ToList();
        Assert.True(bad.Count == 0, "not passing: " + string.Join("; ", bad.Select(r => $"{r.Name} {r.Status}")));
        Assert.DoesNotContain(rows, r => r.Failed);
    }

    [GoldenFact]
    public void GoldenVerbReadsThePthFilesWhenAsked()
    {
        var dir = SharedData.GoldenCases().First();
        var run = CliRun.Of("golden", dir, "--from-pth");
        output.WriteLine(run.Output + run.Error);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("weights_vae.pth", run.Output, StringComparison.Ordinal);
        Assert.Contains("PASS", run.Output, StringComparison.Ordinal);
    }
}
