using System.Text.Json;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Tests.Checkpoints.Torch;
using VarSharp.Tests.Cli;
using VarSharp.Tests.Support;
using Xunit.Abstractions;

namespace VarSharp.Tests.Checkpoints;

/// <summary>`import`: official-layout .pth files become a bundle whose config and weights equal the golden case's.</summary>
public class ImportTests(ITestOutputHelper output)
{
    private static string Case(string name) => Path.Combine(SharedData.GoldenDir, name);

    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void ImportedBundleHasTheGoldenConfigAndWeights(string caseName)
    {
        using var tmp = new TempFolder();
        using var golden = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Case(caseName), "config.json")));
        // Heads are explicit because without attn_l2_norm the weights do not record them (tiny widths are not 64·depth).
        var bundle = tmp.File("bundle");
        var run = CliRun.Of(GoldenImport.Args(Case(caseName), bundle));
        output.WriteLine(run.Output + run.Error);
        Assert.Equal(0, run.ExitCode);

        var manifest = ModelBundle.Verify(bundle);
        Assert.Equal([ModelBundle.ConfigFileName, ModelBundle.WeightsFileName], manifest.Files.Keys.Order(StringComparer.Ordinal));
        using var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(bundle, "config.json")));
        var importedVq = VqVaeConfig.FromJson(config.RootElement.GetProperty("vqvae"));
        Assert.Equal(GoldenImport.Comparable(VqVaeConfig.FromJson(golden.RootElement.GetProperty("vqvae")), importedVq), importedVq);
        var importedVar = VarConfig.FromGoldenConfig(config.RootElement);
        Assert.Equal(GoldenImport.Comparable(VarConfig.FromGoldenConfig(golden.RootElement), importedVar), importedVar);
        // The var block is self-contained too (vocab_size and cvae included), for var-only bundles.
        Assert.Equal(importedVar, VarConfig.FromJson(config.RootElement.GetProperty("var").GetRawText()));

        var imported = SafeTensors.Load(Path.Combine(bundle, ModelBundle.WeightsFileName));
        var reference = SafeTensors.Load(Path.Combine(Case(caseName), "weights.safetensors"));
        try
        {
            Assert.Equal(reference.Keys.Order(StringComparer.Ordinal), imported.Keys.Order(StringComparer.Ordinal));
            foreach (var (name, t) in reference) Assert.True(t.bytes.SequenceEqual(imported[name].bytes), name);
        }
        finally
        {
            MaliciousCheckpointTests.DisposeAll(imported);
            MaliciousCheckpointTests.DisposeAll(reference);
        }
        using var vae = ModelFolder.LoadTokenizer(bundle);
        Assert.Equal(VqVaeConfig.FromJson(golden.RootElement.GetProperty("vqvae")), vae.Config);
    }

    [GoldenFact]
    public void OfficialLayoutsInferTheirPresets()
    {
        var dir = Path.Combine(SharedData.GoldenDir, "official-keys");
        foreach (var file in Directory.GetFiles(dir, "var_*.json"))
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            var c = doc.RootElement.GetProperty("config");
            var cfg = ArchitectureInference.InferVar(Shapes(doc), null, new ImportOptions());
            var preset = VarConfig.Preset(c.GetProperty("depth").GetInt32());
            Assert.Equal(preset, cfg);
            Assert.Equal(c.GetProperty("patch_nums").EnumerateArray().Select(e => e.GetInt32()), cfg.PatchNums);
        }
        foreach (var file in Directory.GetFiles(dir, "vae_*.json"))
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            var patchNums = doc.RootElement.GetProperty("config").GetProperty("v_patch_nums").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            // Ten scales fit both official schedules, so the VQ-VAE alone is ambiguous until told.
            var e = Assert.Throws<VarSharpException>(() => ArchitectureInference.InferVqVae(Shapes(doc), new ImportOptions()));
            Assert.Contains("--patch-nums", e.Message, StringComparison.Ordinal);
            var cfg = ArchitectureInference.InferVqVae(Shapes(doc), new ImportOptions(), varPatchNums: patchNums);
            Assert.Equal(patchNums[^1] == 16 ? VqVaeConfig.Official256 : VqVaeConfig.Official512, cfg);
        }
    }

    [GoldenFact]
    public void ImportCanSignTheBundleAndRefusesABadKeyBeforeWriting()
    {
        using var tmp = new TempFolder();
        BundleSignature.CreateKeyPair(tmp.File("team"));
        string[] Args(string output, string key) =>
            ["import", "--vae", Path.Combine(Case("tiny-32"), "weights_vae.pth"), "--patch-nums", "1,2,3,4,6,8", "--output", output, "--sign", key];

        var signed = CliRun.Of(Args(tmp.File("signed"), tmp.File("team.key")));
        Assert.True(signed.ExitCode == 0, signed.Error);
        Assert.Contains("signed with key", signed.Output, StringComparison.Ordinal);
        BundleSignature.Verify(tmp.File("signed"), BundleTrust.Load([tmp.File("team.pub")]));

        var badKey = CliRun.Of(Args(tmp.File("unsigned"), tmp.File("team.pub")));
        Assert.Equal(1, badKey.ExitCode);
        Assert.StartsWith($"error: {tmp.File("team.pub")} holds no private key", badKey.Error, StringComparison.Ordinal);
        Assert.False(Directory.Exists(tmp.File("unsigned")));
    }

    [GoldenFact]
    public void AmbiguousArchitecturesAskForTheOptionThatSettlesThem()
    {
        using var tmp = new TempFolder();
        var saln = CliRun.Of("import", "--var", Path.Combine(Case("tiny-saln"), "weights_var.pth"), "--output", tmp.File("a"));
        Assert.Equal(1, saln.ExitCode);
        Assert.Contains("--heads", saln.Error, StringComparison.Ordinal);

        var vaeAlone = CliRun.Of("import", "--vae", Path.Combine(Case("tiny-32"), "weights_vae.pth"), "--output", tmp.File("b"));
        Assert.Equal(1, vaeAlone.ExitCode);
        Assert.Contains("--patch-nums", vaeAlone.Error, StringComparison.Ordinal);

        var wrongDepth = CliRun.Of("import", "--var", Path.Combine(Case("tiny-32"), "weights_var.pth"), "--depth", "16", "--output", tmp.File("c"));
        Assert.Equal(1, wrongDepth.ExitCode);
        Assert.Contains("--depth 16", wrongDepth.Error, StringComparison.Ordinal);

        // A schedule with as many scales and tokens as lvl_1L records, but another one, is refused.
        var reordered = CliRun.Of("import", "--var", Path.Combine(Case("tiny-32"), "weights_var.pth"), "--patch-nums", "2,1,3,4,6,8", "--output", tmp.File("f"));
        Assert.Equal(1, reordered.ExitCode);
        Assert.Contains("--patch-nums 2,1,3,4,6,8 differs from the scales 1,2,3,4,6,8 its lvl_1L records", reordered.Error, StringComparison.Ordinal);

        // An option about a checkpoint that is not given is refused, not ignored.
        var strayDepth = CliRun.Of("import", "--vae", Path.Combine(Case("tiny-32"), "weights_vae.pth"), "--patch-nums", "1,2,3,4,6,8", "--depth", "2", "--output", tmp.File("e"));
        Assert.Equal(1, strayDepth.ExitCode);
        Assert.Equal("error: --depth describes the --var checkpoint, which is not given; leave it out or give the checkpoint.", strayDepth.Error.TrimEnd());

        var ok = CliRun.Of("import", "--vae", Path.Combine(Case("tiny-32"), "weights_vae.pth"), "--patch-nums", "1,2,3,4,6,8", "--output", tmp.File("d"));
        Assert.Equal(0, ok.ExitCode);
        Assert.False(Directory.Exists(tmp.File("a")) || Directory.Exists(tmp.File("b")) || Directory.Exists(tmp.File("c")));
        Assert.Equal([tmp.File("d")], Directory.GetFileSystemEntries(tmp.Path));
    }

    [GoldenFact]
    public void HostileCheckpointsAreRefusedWithoutWritingAnything()
    {
        using var tmp = new TempFolder();
        foreach (var file in Directory.GetFiles(Path.Combine(SharedData.GoldenDir, "malicious"), "m*.pth"))
        {
            var run = CliRun.Of("import", "--var", file, "--output", tmp.File("out"));
            Assert.Equal(1, run.ExitCode);
            Assert.StartsWith("error: " + file, run.Error, StringComparison.Ordinal);
            Assert.Single(run.Error.TrimEnd().Split('\n'));
        }
        Assert.Empty(Directory.GetFileSystemEntries(tmp.Path));
    }

    [GoldenFact]
    public void ExistingOutputIsOnlyReplacedWithForceAndOnlyIfItIsABundle()
    {
        using var tmp = new TempFolder();
        string[] args = ["import", "--var", Path.Combine(Case("tiny-32"), "weights_var.pth"), "--output", tmp.File("out")];
        Assert.Equal(0, CliRun.Of(args).ExitCode);
        var again = CliRun.Of(args);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("--force", again.Error, StringComparison.Ordinal);
        Assert.Equal(0, CliRun.Of([.. args, "--force"]).ExitCode);
        ModelBundle.Verify(tmp.File("out"));

        Directory.CreateDirectory(tmp.File("notabundle"));
        File.WriteAllText(tmp.File("notabundle/precious.txt"), "keep me");
        var refused = CliRun.Of("import", "--var", Path.Combine(Case("tiny-32"), "weights_var.pth"), "--output", tmp.File("notabundle"), "--force");
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal("keep me", File.ReadAllText(tmp.File("notabundle/precious.txt")));
        // No temporary or moved-aside folders are left behind.
        Assert.Equal([tmp.File("notabundle"), tmp.File("out")], Directory.GetFileSystemEntries(tmp.Path).Order(StringComparer.Ordinal));
    }

    private static Dictionary<string, long[]> Shapes(JsonDocument doc) =>
        doc.RootElement.GetProperty("keys").EnumerateArray().ToDictionary(
            k => k.GetProperty("name").GetString()!,
            k => k.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray());
}
