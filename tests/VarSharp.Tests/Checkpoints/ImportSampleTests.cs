using System.Text.Json;
using VarSharp.Checkpoints;
using VarSharp.Sampling;
using VarSharp.Tests.Cli;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Checkpoints;

/// <summary>Issue acceptance: a bundle imported from the golden .pth files samples the same bytes as the safetensors weights.</summary>
public class ImportSampleTests
{
    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void ImportedBundleSamplesTheSameBytesAsTheSafetensorsWeights(string caseName)
    {
        var caseDir = Path.Combine(SharedData.GoldenDir, caseName);
        using var tmp = new TempFolder();
        var bundle = tmp.File("bundle");
        var run = CliRun.Of(GoldenImport.Args(caseDir, bundle));
        Assert.True(run.ExitCode == 0, run.Error);

        var classes = GoldenImport.TwoClasses(caseDir);
        var a = CliRun.Of("sample", "--model", bundle, "--class", classes, "--count", "2", "--seed", "5", "-o", tmp.File("from-pth"));
        var b = CliRun.Of("sample", "--model", caseDir, "--class", classes, "--count", "2", "--seed", "5", "-o", tmp.File("from-safetensors"));
        Assert.True(a.ExitCode == 0 && b.ExitCode == 0, a.Error + b.Error);
        var pngs = Directory.GetFiles(tmp.File("from-pth"), "*.png").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(5, pngs.Count); // 4 images + grid
        foreach (var name in pngs)
            Assert.Equal(File.ReadAllBytes(Path.Combine(tmp.File("from-safetensors"), name!)), File.ReadAllBytes(Path.Combine(tmp.File("from-pth"), name!)));
    }

    [GoldenFact]
    public void PipelineRefusesABundleWhoseWeightsWereAltered()
    {
        var caseDir = SharedData.GoldenCases().First();
        using var tmp = new TempFolder();
        var bundle = tmp.File("bundle");
        Assert.Equal(0, CliRun.Of(GoldenImport.Args(caseDir, bundle)).ExitCode);
        var weights = Path.Combine(bundle, ModelBundle.WeightsFileName);
        var bytes = File.ReadAllBytes(weights);
        bytes[^1] ^= 0x01;
        File.WriteAllBytes(weights, bytes);
        var e = Assert.ThrowsAny<VarSharpException>(() => VarPipeline.Load(bundle));
        Assert.Contains("SHA-256", e.Message, StringComparison.OrdinalIgnoreCase);
        var cli = CliRun.Of("sample", "--model", bundle, "-o", tmp.File("out"));
        Assert.Equal(1, cli.ExitCode);
        Assert.False(Directory.Exists(tmp.File("out")) && Directory.EnumerateFiles(tmp.File("out")).Any());
    }
}
