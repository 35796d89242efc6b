using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Tests.Support;
using VarSharp.Tokenizer;

namespace VarSharp.Tests.Checkpoints;

/// <summary>Bundles are verified against their manifest before anything is loaded from them.</summary>
public class ModelBundleTests
{
    private static string WriteTinyBundle(TempFolder tmp, bool force = false)
    {
        var cfg = TinyConfigs.VqVae();
        using var vae = new VqVae(cfg);
        var config = new JsonObject { ["vqvae"] = JsonSerializer.SerializeToNode(cfg, JsonConfig.Options) }.ToJsonString(JsonConfig.Options);
        var dir = tmp.File("bundle");
        ModelBundle.Write(dir, config, vae.state_dict().Select(kv => new KeyValuePair<string, torch.Tensor>("vae." + kv.Key, kv.Value)), force);
        return dir;
    }

    [Fact]
    public void FlippingAnyByteOfTheWeightsIsADigestError()
    {
        using var tmp = new TempFolder();
        var dir = WriteTinyBundle(tmp);
        using (ModelFolder.LoadTokenizer(dir)) { }
        var weights = Path.Combine(dir, ModelBundle.WeightsFileName);
        var original = File.ReadAllBytes(weights);
        var rng = new Random(1234);
        var positions = new[] { 0, 1, 7, 8, original.Length / 2, original.Length - 2, original.Length - 1 }
            .Concat(Enumerable.Range(0, 25).Select(_ => rng.Next(original.Length)));
        foreach (var pos in positions)
        {
            var bytes = (byte[])original.Clone();
            bytes[pos] ^= (byte)(1 << rng.Next(8));
            File.WriteAllBytes(weights, bytes);
            var e = Assert.Throws<ModelBundleException>(() => ModelFolder.LoadTokenizer(dir).Dispose());
            Assert.Equal(ModelBundleProblem.DigestMismatch, e.Problem);
            Assert.Contains(weights, e.Message, StringComparison.Ordinal);
        }
        File.WriteAllBytes(weights, original);
        ModelBundle.Verify(dir);
    }

    /// <summary>
    /// A manifest that lists a file of 0 bytes with the empty file's digest, where the file is a link to /dev/zero or a
    /// pipe: its length matches, and hashing it would never end. Refused unread.
    /// </summary>
    [Fact]
    public void AListedLinkOrPipeIsRefusedBeforeItIsHashed()
    {
        using var tmp = new TempFolder();
        var dir = WriteTinyBundle(tmp);
        var manifest = Path.Combine(dir, ModelBundle.ManifestFileName);
        var empty = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Array.Empty<byte>()));
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(manifest))!;
        node["files"]!["zero"] = new System.Text.Json.Nodes.JsonObject { ["sha256"] = empty, ["bytes"] = 0 };
        File.WriteAllText(manifest, node.ToJsonString());
        var zero = Path.Combine(dir, "zero");

        File.CreateSymbolicLink(zero, "/dev/zero");
        var e = Assert.Throws<ModelBundleException>(() => ModelBundle.Verify(dir));
        Assert.Equal(ModelBundleProblem.NotAPlainFile, e.Problem);
        Assert.Equal($"Model bundle file {zero} is a symbolic link, not a plain file with content, so it is not read.", e.Message);

        File.Delete(zero);
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", zero)) mkfifo.WaitForExit();
        e = Assert.Throws<ModelBundleException>(() => ModelBundle.Verify(dir));
        Assert.Equal(ModelBundleProblem.NotAPlainFile, e.Problem);
        Assert.Contains("is empty (or a device or pipe)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OnlyAManifestOfOurFormatMakesAnEnclosingBundle()
    {
        using var tmp = new TempFolder();
        var bundle = WriteTinyBundle(tmp);
        var inside = Path.Combine(bundle, "a", "b");
        Assert.Equal(Path.GetFullPath(bundle), ModelBundle.EnclosingBundle(inside));
        var e = Assert.Throws<VarSharpException>(() => ModelBundle.CheckOutsideBundles(inside, "The output folder"));
        Assert.Contains("is inside the bundle", e.Message, StringComparison.Ordinal);

        // Another project's manifest, or one whose format string cannot even be decoded, is not a bundle.
        var foreign = tmp.File("foreign");
        Directory.CreateDirectory(foreign);
        foreach (var text in new[] { """{"format": "npm"}""", """{"format": "\udc00"}""", """[1]""", "not json" })
        {
            File.WriteAllText(Path.Combine(foreign, ModelBundle.ManifestFileName), text);
            Assert.Null(ModelBundle.EnclosingBundle(Path.Combine(foreign, "out")));
            ModelBundle.CheckOutsideBundles(Path.Combine(foreign, "out"), "The output folder");
        }
    }

    [Fact]
    public void MissingExtraResizedAndBadManifestFilesAreRefused()
    {
        using var tmp = new TempFolder();
        var dir = WriteTinyBundle(tmp);
        var config = Path.Combine(dir, ModelBundle.ConfigFileName);
        var manifest = Path.Combine(dir, ModelBundle.ManifestFileName);
        var configText = File.ReadAllText(config);
        var manifestText = File.ReadAllText(manifest);

        void Expect(ModelBundleProblem problem)
        {
            var e = Assert.Throws<ModelBundleException>(() => ModelFolder.LoadTokenizer(dir).Dispose());
            Assert.Equal(problem, e.Problem);
            Assert.EndsWith(".", e.Message, StringComparison.Ordinal);
        }

        File.WriteAllText(Path.Combine(dir, "notes.txt"), "x");
        Expect(ModelBundleProblem.ExtraFile);
        File.Delete(Path.Combine(dir, "notes.txt"));

        Directory.CreateDirectory(Path.Combine(dir, "sub"));
        Expect(ModelBundleProblem.ExtraFile);
        Directory.Delete(Path.Combine(dir, "sub"));

        File.Delete(config);
        Expect(ModelBundleProblem.MissingFile);
        File.WriteAllText(config, configText + " ");
        Expect(ModelBundleProblem.SizeMismatch);
        File.WriteAllText(config, configText);

        File.WriteAllText(manifest, "{\"format\": \"varsharp-bundle\", \"format_version\": 99, \"files\": {}}");
        Expect(ModelBundleProblem.ManifestInvalid);
        File.WriteAllText(manifest, manifestText.Replace("config.json", "../config.json", StringComparison.Ordinal));
        Expect(ModelBundleProblem.ManifestInvalid);
        File.WriteAllText(manifest, "not json");
        Expect(ModelBundleProblem.ManifestInvalid);
        // Valid JSON whose values have the wrong kind, or whose strings cannot be decoded, is refused the same way.
        File.WriteAllText(manifest, manifestText.Replace("\"format_version\": 1", "\"format_version\": \"1\"", StringComparison.Ordinal));
        Expect(ModelBundleProblem.ManifestInvalid);
        File.WriteAllText(manifest, System.Text.RegularExpressions.Regex.Replace(manifestText, "\"bytes\": (\\d+)", "\"bytes\": \"$1\""));
        Expect(ModelBundleProblem.ManifestInvalid);
        File.WriteAllText(manifest, manifestText.Replace("config.json", "config\\ud800.json", StringComparison.Ordinal));
        Expect(ModelBundleProblem.ManifestInvalid);
        File.WriteAllText(manifest, manifestText);
        ModelBundle.Verify(dir);

        // A plain model folder (no manifest) still loads unchecked.
        File.Delete(manifest);
        using (ModelFolder.LoadTokenizer(dir)) { }
        Assert.Throws<ModelBundleException>(() => ModelBundle.Verify(dir));
    }

    [Fact]
    public void WriteLeavesNoTemporaryFoldersAndRefusesToClobber()
    {
        using var tmp = new TempFolder();
        var dir = WriteTinyBundle(tmp);
        var e = Assert.Throws<ModelBundleException>(() => WriteTinyBundle(tmp));
        Assert.Equal(ModelBundleProblem.OutputExists, e.Problem);
        Assert.Equal([dir], Directory.GetFileSystemEntries(tmp.Path));
        ModelBundle.Verify(dir);

        // Replacing it (--force) exchanges the folders and leaves neither the new one's temporary nor the old one behind.
        var before = File.ReadAllBytes(Path.Combine(dir, ModelBundle.WeightsFileName));
        WriteTinyBundle(tmp, force: true);
        Assert.Equal([dir], Directory.GetFileSystemEntries(tmp.Path));
        ModelBundle.Verify(dir);
        Assert.NotEqual(before, File.ReadAllBytes(Path.Combine(dir, ModelBundle.WeightsFileName)));   // fresh random weights
    }
}
