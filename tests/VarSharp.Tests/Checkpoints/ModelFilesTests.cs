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
        // Same config and shapes, other weights: the swapped weights file has exactly the manifest's length. The config
        // swap keeps the length too (one class name for another of the same size).
        var other = TinyModels.WriteBundle(_temp.File("other"), seed: 8);
        var replacement = name == "config.json"
            ? File.ReadAllText(Path.Combine(bundle, name)).Replace("\"vqvae\"", "\"vqvae\" ")[..^1]
            : null;
        using (var untouched = VarPipeline.Load(bundle)) Assert.NotNull(untouched);

        ModelFiles.AfterManifestCheck = dir =>
        {
            if (replacement is null) File.Copy(Path.Combine(other, name), Path.Combine(dir, name), overwrite: true);
            else File.WriteAllText(Path.Combine(dir, name), replacement);
        };
        var e = Assert.Throws<ModelBundleException>(() => VarPipeline.Load(bundle));
        Assert.Equal(ModelBundleProblem.DigestMismatch, e.Problem);
        Assert.Contains($"{name} has SHA-256", e.Message);
    }

    [Fact]
    public void AHashedLoadCoversTheWholeFileAndKeepsOnlyWhatIsAsked()
    {
        var bundle = TinyModels.WriteBundle(_temp.File("bundle"));
        var path = Path.Combine(bundle, "model.safetensors");
        var (tensors, sha, bytes) = SafeTensors.LoadHashed(path, name => name.StartsWith("vae.", StringComparison.Ordinal));
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
