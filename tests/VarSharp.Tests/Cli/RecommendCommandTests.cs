using System.Text.Json.Nodes;
using VarSharp.Checkpoints;
using VarSharp.Sampling;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Cli;

/// <summary>`recommend` sets a model's sampling block safely: merged fields, a fresh manifest for bundles, nothing written on bad input.</summary>
public sealed class RecommendCommandTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    private static readonly BundleSource Source = new("var", "var_tiny.pth", new string('a', 64), 123);

    private string Bundle(string name) => TinyModels.WriteBundle(_temp.File(name), sources: [Source]);

    private static JsonObject Manifest(string dir) => JsonNode.Parse(File.ReadAllText(Path.Combine(dir, ModelBundle.ManifestFileName)))!.AsObject();

    [Fact]
    public void ABundleGetsTheSettingsAndAManifestThatVerifies()
    {
        var dir = Bundle("bundle");
        var before = Manifest(dir);
        var weights = File.ReadAllBytes(Path.Combine(dir, ModelBundle.WeightsFileName));

        var run = CliRun.Of("recommend", "--model", dir, "--cfg", "1.5", "--top-k", "3");
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("now recommends cfg 1.5, top-k 3, top-p 0.95 (was cfg 4, top-k 4 (the reference's share of the codebook), top-p 0.95)", run.Output);

        ModelBundle.Verify(dir);
        using (var pipe = VarPipeline.Load(dir))
            Assert.Equal(new SamplingDefaults(1.5, 3, 0.95), pipe.Defaults);
        var after = Manifest(dir);
        Assert.NotEqual(before["files"]!["config.json"]!.ToJsonString(), after["files"]!["config.json"]!.ToJsonString());
        Assert.Equal(before["files"]!["model.safetensors"]!.ToJsonString(), after["files"]!["model.safetensors"]!.ToJsonString());
        Assert.Equal(before["sources"]!.ToJsonString(), after["sources"]!.ToJsonString());
        Assert.Equal(weights, File.ReadAllBytes(Path.Combine(dir, ModelBundle.WeightsFileName)));
        Assert.Equal([ModelBundle.ConfigFileName, ModelBundle.ManifestFileName, ModelBundle.WeightsFileName],
            Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_temp.Path, ".bundle.*"));

        // A second call changes only the field it names; --reset removes the block.
        Assert.Equal(0, CliRun.Of("recommend", "--model", dir, "--top-p", "0.8").ExitCode);
        Assert.Equal(new SamplingDefaults(1.5, 3, 0.8), ReadDefaults(dir));
        Assert.Contains("recommends cfg 1.5, top-k 3, top-p 0.8", CliRun.Of("recommend", "--model", dir).Output);
        Assert.Equal(0, CliRun.Of("recommend", "--model", dir, "--reset").ExitCode);
        Assert.Equal(SamplingDefaults.Reference, ReadDefaults(dir));
        Assert.Null(JsonNode.Parse(File.ReadAllText(ModelFolder.ConfigPath(dir)))!["sampling"]);
        ModelBundle.Verify(dir);
    }

    [Fact]
    public void ClassNamesAreSetSafelyAndUsedBySample()
    {
        var dir = Bundle("named");
        var names = _temp.File("names.txt");
        File.WriteAllText(names, "cat\ndog\n sea otter \ntench, Tinca tinca\nowl\n\n");
        var run = CliRun.Of("recommend", "--model", dir, "--classes", names);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("class names set (5: cat, dog, sea otter, tench, Tinca tinca, owl)", run.Output);
        ModelBundle.Verify(dir);
        using (var pipe = VarPipeline.Load(dir))
        {
            Assert.Equal(["cat", "dog", "sea otter", "tench, Tinca tinca", "owl"], pipe.ClassNames);
            Assert.Equal(2, pipe.ClassId("Sea Otter"));
        }
        var sample = CliRun.Of("sample", "-m", dir, "--class", "owl", "--class", "name:Tench, tinca tinca", "-o", _temp.File("owls"));
        Assert.True(sample.ExitCode == 0, sample.Error);
        Assert.True(File.Exists(Path.Combine(_temp.File("owls"), "000-class4.png")));
        Assert.True(File.Exists(Path.Combine(_temp.File("owls"), "001-class3.png")));   // a name with a comma, whole

        // Wrong counts and repeated names change nothing.
        var config = File.ReadAllText(ModelFolder.ConfigPath(dir));
        File.WriteAllText(names, "cat\ndog\n");
        Assert.Contains("names 2 classes (one per line) but the model has 5", CliRun.Of("recommend", "--model", dir, "--classes", names).Error);
        File.WriteAllText(names, "cat\ndog\nCat\nfox\nowl\n");
        Assert.Contains("The class name 'cat' appears more than once", CliRun.Of("recommend", "--model", dir, "--classes", names).Error);
        File.WriteAllText(names, "cat\n\nfox\nowl\nbee\n");
        Assert.Contains("Class names must not be empty", CliRun.Of("recommend", "--model", dir, "--classes", names).Error);
        // Good names with a bad setting: refused as a whole, the names are not written either.
        File.WriteAllText(names, "ant\nbee\ncow\ndoe\nelk\n");
        var both = CliRun.Of("recommend", "--model", dir, "--classes", names, "--top-k", "99999");
        Assert.Equal(1, both.ExitCode);
        Assert.Contains("--top-k must be from 0 (off) to the vocabulary size", both.Error);
        Assert.Equal(config, File.ReadAllText(ModelFolder.ConfigPath(dir)));
        ModelBundle.Verify(dir);

        // Good names and a good setting: one write holds both.
        var manifestBefore = File.ReadAllText(Path.Combine(dir, ModelBundle.ManifestFileName));
        var together = CliRun.Of("recommend", "--model", dir, "--classes", names, "--cfg", "3");
        Assert.True(together.ExitCode == 0, together.Error);
        Assert.Equal(3.0, ReadDefaults(dir).Cfg);
        Assert.Equal(["ant", "bee", "cow", "doe", "elk"], ModelFolder.ReadClassNames(ModelFolder.ConfigPath(dir), 5));
        Assert.NotEqual(manifestBefore, File.ReadAllText(Path.Combine(dir, ModelBundle.ManifestFileName)));
        ModelBundle.Verify(dir);
    }

    /// <summary>A bundle reached through a symbolic link is changed where it lives, and the link stays a link.</summary>
    [Fact]
    public void ABundleBehindASymbolicLinkIsEditedInPlace()
    {
        var dir = Bundle("real");
        var link = _temp.File("link");
        Directory.CreateSymbolicLink(link, dir);
        var run = CliRun.Of("recommend", "--model", link, "--cfg", "3");
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Equal(3.0, ReadDefaults(dir).Cfg);
        Assert.NotNull(new DirectoryInfo(link).LinkTarget);
        ModelBundle.Verify(dir);
        // With a trailing slash (as shells complete it) too.
        Assert.Equal(0, CliRun.Of("recommend", "--model", link + "/", "--cfg", "1.5").ExitCode);
        Assert.Equal(1.5, ReadDefaults(dir).Cfg);
        Assert.NotNull(new DirectoryInfo(link).LinkTarget);
    }

    [Fact]
    public void APlainFolderKeepsItsOtherFields()
    {
        var dir = TinyModels.WriteFolder(_temp.File("plain"), editConfig: root =>
        {
            root["classes"] = new JsonArray("a", "b", "c", "d", "e");
            return root;
        });
        Assert.Equal(0, CliRun.Of("recommend", "--model", dir, "--cfg", "2").ExitCode);
        Assert.Equal(new SamplingDefaults(2.0, null, 0.95), ReadDefaults(dir));
        Assert.Equal(["a", "b", "c", "d", "e"], ModelFolder.ReadClassNames(ModelFolder.ConfigPath(dir), 5));
        Assert.False(ModelBundle.IsBundle(dir));
        Assert.Equal(["config.json", "model.safetensors"], Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("--top-p must be in [0, 1] (0 is off), found 2.", "--top-p", "2")]
    [InlineData("--top-p must be in [0, 1] (0 is off), found NaN.", "--top-p", "NaN")]
    [InlineData("--cfg must be a finite number ≥ 0, found -1.", "--cfg", "-1")]
    [InlineData("--cfg must be a finite number ≥ 0, found Infinity.", "--cfg", "Infinity")]
    [InlineData("--top-k must be from 0 (off) to the vocabulary size 16, found 17.", "--top-k", "17")]
    [InlineData("Give --reset alone", "--reset", "--cfg", "2")]
    public void BadSettingsChangeNothing(string message, params string[] options)
    {
        var dir = Bundle("bad");
        var config = File.ReadAllBytes(ModelFolder.ConfigPath(dir));
        var manifest = File.ReadAllBytes(Path.Combine(dir, ModelBundle.ManifestFileName));
        var run = CliRun.Of(["recommend", "--model", dir, .. options]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(message, run.Error);
        Assert.Equal(config, File.ReadAllBytes(ModelFolder.ConfigPath(dir)));
        Assert.Equal(manifest, File.ReadAllBytes(Path.Combine(dir, ModelBundle.ManifestFileName)));
    }

    [Fact]
    public void AnAlteredBundleIsNotReblessed()
    {
        var dir = Bundle("altered");
        var weights = Path.Combine(dir, ModelBundle.WeightsFileName);
        var bytes = File.ReadAllBytes(weights);
        bytes[^1] ^= 1;
        File.WriteAllBytes(weights, bytes);
        var manifest = File.ReadAllBytes(Path.Combine(dir, ModelBundle.ManifestFileName));

        var run = CliRun.Of("recommend", "--model", dir, "--cfg", "1");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("manifest says", run.Error);
        Assert.Equal(manifest, File.ReadAllBytes(Path.Combine(dir, ModelBundle.ManifestFileName)));
        Assert.Throws<ModelBundleException>(() => ModelFolder.WriteSamplingDefaults(dir, new SamplingDefaults(1.0), 16));
    }

    [Fact]
    public void AMissingFolderIsOneSentence()
    {
        var run = CliRun.Of("recommend", "--model", _temp.File("nowhere"), "--cfg", "1");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("does not exist", run.Error);
    }

    private static SamplingDefaults ReadDefaults(string dir) => ModelFolder.ReadSamplingDefaults(ModelFolder.ConfigPath(dir), 16);
}
