using System.Security.Cryptography;
using VarSharp.Checkpoints;
using VarSharp.Sampling;
using VarSharp.Tests.Support;
using static TorchSharp.torch;

namespace VarSharp.Tests.Checkpoints;

/// <summary>
/// A bundle's files are verified on the very bytes that are loaded: swapping a file after the manifest check (the
/// moment a verify-then-read-by-path loader would miss) is caught, and the hashing read covers the whole file.
/// </summary>
public sealed class ModelFilesTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose()
    {
        ModelFiles.AfterManifestCheck = null;
        _temp.Dispose();
    }

    [Theory]
    [InlineData("model.safetensors")]
    [InlineData("config.json")]
    public void AFileSwappedAfterTheManifestCheckIsRefused(string name)
    {
        var bundle = TinyModels.WriteBundle(_temp.File("bundle"), seed: 7);
        // Same config and shapes, other weights: the swapped weights file has exactly the manifest's length. The swapped
        // config is valid JSON of the same length describing the same model (one space moved to the end), so a loader
        // that checked the folder and then read it by path would load it without complaint.
        var other = TinyModels.WriteBundle(_temp.File("other"), seed: 8);
        var original = File.ReadAllText(Path.Combine(bundle, "config.json"));
        Assert.Contains("\"vqvae\": ", original);
        var replacement = name == "config.json" ? original.Replace("\"vqvae\": ", "\"vqvae\":") + " " : null;
        if (replacement is not null) Assert.Equal(original.Length, replacement.Length);
        using (var untouched = VarPipeline.Load(bundle)) Assert.NotNull(untouched);

        ModelFiles.AfterManifestCheck = dir =>
        {
            ModelFiles.AfterManifestCheck = null;   // once, and never left behind on this thread
            if (replacement is null) File.Copy(Path.Combine(other, name), Path.Combine(dir, name), overwrite: true);
            else File.WriteAllText(Path.Combine(dir, name), replacement);
        };
        var e = Assert.Throws<ModelBundleException>(() => VarPipeline.Load(bundle));
        Assert.Equal(ModelBundleProblem.DigestMismatch, e.Problem);
        Assert.Contains($"{name} has SHA-256", e.Message);
    }

    /// <summary>
    /// Editing a bundle's config (class names here) works on the verified bytes too: a config swapped in after the
    /// check is caught, not edited and re-blessed with a fresh digest.
    /// </summary>
    [Fact]
    public void AConfigSwappedBeforeAnEditIsRefusedAndTheBundleKept()
    {
        var bundle = TinyModels.WriteBundle(_temp.File("bundle"), seed: 7);
        var configPath = Path.Combine(bundle, "config.json");
        var original = File.ReadAllText(configPath);
        var swapped = original.Replace("\"vqvae\": ", "\"vqvae\":") + " ";
        ModelFiles.AfterManifestCheck = dir =>
        {
            ModelFiles.AfterManifestCheck = null;
            File.WriteAllText(Path.Combine(dir, "config.json"), swapped);
        };
        var names = Enumerable.Range(0, 5).Select(i => $"class {i}").ToList();
        var e = Assert.Throws<ModelBundleException>(() => ModelFolder.WriteClassNames(bundle, names, 5));
        Assert.Equal(ModelBundleProblem.DigestMismatch, e.Problem);
        Assert.Equal(swapped, File.ReadAllText(configPath));   // left as found, not re-blessed
        Assert.Equal(ModelBundleProblem.DigestMismatch, Assert.Throws<ModelBundleException>(() => ModelBundle.Verify(bundle)).Problem);
    }

    [Fact]
    public void AHashedLoadCoversTheWholeFileAndKeepsOnlyWhatIsAsked()
    {
        var bundle = TinyModels.WriteBundle(_temp.File("bundle"));
        var path = Path.Combine(bundle, "model.safetensors");
        var (tensors, _, sha, bytes) = SafeTensors.LoadHashed(path, name => name.StartsWith("vae.", StringComparison.Ordinal));
        var all = SafeTensors.Load(path);
        try
        {
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path))), sha);
            Assert.Equal(new FileInfo(path).Length, bytes);
            Assert.Equal(all.Keys.Where(k => k.StartsWith("vae.", StringComparison.Ordinal)).Order(), tensors.Keys.Order());
            foreach (var (key, t) in tensors) Assert.True(t.contiguous().bytes.SequenceEqual(all[key].contiguous().bytes), key);
        }
        finally
        {
            foreach (var t in tensors.Values.Concat(all.Values)) t.Dispose();
        }
    }

    [Fact]
    public void AHashedLoadTakesEmptyTensorsSharingAnOffsetInAnyHeaderOrder()
    {
        // "b" spans [0, 4) and the empty "a" sits at [0, 0), listed after it: a forward-only pass must take "a" first.
        var path = RawSafeTensorsFile.Write(_temp.File("empty.safetensors"),
            """{"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}""", 4);
        var (tensors, _, sha, _) = SafeTensors.LoadHashed(path, _ => true);
        using var a = tensors["a"];
        using var b = tensors["b"];
        Assert.Equal(0, a.numel());
        Assert.Equal(1, b.numel());
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path))), sha);
    }

    [Fact]
    public void AHashingReadMovesOnlyForward()
    {
        var data = Enumerable.Range(0, 5000).Select(i => (byte)(i * 7)).ToArray();
        using var stream = new HashingReadStream(new MemoryStream(data));
        var head = new byte[10];
        stream.ReadExactly(head);
        Assert.Equal(3000, stream.Seek(3000, SeekOrigin.Begin));   // skipped bytes are hashed too
        Assert.Throws<InvalidOperationException>(() => stream.Seek(100, SeekOrigin.Begin));
        stream.Seek(0, SeekOrigin.End);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(data)), stream.Sha256());
    }
}
