using System.Security.Cryptography;
using VarSharp.Checkpoints;
using VarSharp.Data;
using static TorchSharp.torch;

namespace VarSharp.Evaluation;

/// <summary>
/// The classifier's view of a set of real images: features (N, 256), predicted classes (N) and true labels (N), in
/// dataset order. Computing it for the 10,000 Fashion-MNIST test images takes a while on a CPU, so it can be cached
/// on disk under a key made of the classifier's weights digest and a SHA-256 of the images and labels.
/// </summary>
public sealed class ReferenceFeatures : IDisposable
{
    private const string CacheFormat = "varsharp-classifier-features-v1";
    private const string ContentKey = "content_sha256";

    private ReferenceFeatures(Tensor features, Tensor predictions, Tensor labels, string? cacheFile, bool fromCache, string? cacheProblem = null)
    {
        CacheProblem = cacheProblem;
        Features_ND = features;
        Predictions_N = predictions;
        Labels_N = labels;
        CacheFile = cacheFile;
        FromCache = fromCache;
    }

    public Tensor Features_ND { get; }
    public Tensor Predictions_N { get; }
    public Tensor Labels_N { get; }
    public int Count => (int)Labels_N.shape[0];

    /// <summary>The cache file read or written, or null when caching was off.</summary>
    public string? CacheFile { get; }

    /// <summary>True when the features came from the cache rather than the classifier.</summary>
    public bool FromCache { get; }

    /// <summary>
    /// Why the features could not be written to the cache (one sentence), or null. Not an error: the results stand, the
    /// next run only computes them again.
    /// </summary>
    public string? CacheProblem { get; }

    /// <summary>Top-1 accuracy of the classifier on these images.</summary>
    public double Accuracy()
    {
        using var eq = Predictions_N.eq(Labels_N);
        using var mean = eq.to(float64).mean();
        return mean.item<double>();
    }

    /// <summary>
    /// Features of every image of <paramref name="data"/> under <paramref name="classifier"/>. With a
    /// <paramref name="cacheDir"/> and a classifier loaded from a bundle (so it has a weights digest) the result is
    /// read from, or written to, a cache file there; an unreadable cache file is recomputed and replaced.
    /// </summary>
    public static ReferenceFeatures Compute(FashionClassifier classifier, IImageDataset data, string? cacheDir, int batchSize = 256,
        IProgress<int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(data);
        if (data.ImageSize != classifier.ImageSize)
            throw new VarSharpException($"The reference images are {data.ImageSize}×{data.ImageSize} but the classifier takes {classifier.ImageSize}×{classifier.ImageSize}.");
        var (images, labels) = DatasetTensors.Load(data);
        using (images)
        {
            string? cacheFile = null;
            if (cacheDir is not null && classifier.WeightsDigest is { } digest)
            {
                cacheFile = Path.Combine(cacheDir, $"features-{digest[..16]}-{DataDigest(images, labels)[..16]}.safetensors");
                if (TryRead(cacheFile, data.Count, labels) is { } cached)
                {
                    progress?.Report(data.Count);
                    return new ReferenceFeatures(cached.Features, cached.Predictions, labels, cacheFile, fromCache: true);
                }
            }
            Tensor? features = null, predictions = null;
            try
            {
                var parts = new List<(Tensor F, Tensor P)>();
                try
                {
                    long n = images.shape[0];
                    for (long s = 0; s < n; s += batchSize)
                    {
                        using var chunk = images.narrow(0, s, Math.Min(batchSize, n - s));
                        parts.Add(classifier.Embed(chunk, batchSize));
                        progress?.Report((int)Math.Min(n, s + batchSize));
                    }
                    features = cat(parts.Select(p => p.F).ToArray(), 0);
                    predictions = cat(parts.Select(p => p.P).ToArray(), 0);
                }
                finally
                {
                    foreach (var (f, p) in parts)
                    {
                        f.Dispose();
                        p.Dispose();
                    }
                }
                var problem = cacheFile is null ? null : TryWrite(cacheFile, features, predictions, labels);
                return new ReferenceFeatures(features, predictions, labels, problem is null ? cacheFile : null, fromCache: false, problem);
            }
            catch
            {
                features?.Dispose();
                predictions?.Dispose();
                labels.Dispose();
                throw;
            }
        }
    }

    /// <summary>Rows of this set at <paramref name="indices"/> (features, predictions, labels).</summary>
    public (Tensor Features_ND, Tensor Predictions_N, Tensor Labels_N) Select(IReadOnlyList<int> indices)
    {
        using var idx = tensor(indices.Select(i => (long)i).ToArray());
        return (Features_ND.index_select(0, idx), Predictions_N.index_select(0, idx), Labels_N.index_select(0, idx));
    }

    private static string DataDigest(Tensor images, Tensor labels)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes($"{CacheFormat} {string.Join("x", images.shape)}\n"));
        using (var contiguous = images.contiguous()) hash.AppendData(contiguous.bytes);
        using (var contiguous = labels.contiguous()) hash.AppendData(contiguous.bytes);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static (Tensor Features, Tensor Predictions)? TryRead(string path, int count, Tensor labels)
    {
        if (!File.Exists(path)) return null;
        Dictionary<string, Tensor> loaded;
        string? recorded;
        try
        {
            loaded = SafeTensors.Load(path);
            recorded = SafeTensors.ReadHeader(path).Metadata?.GetValueOrDefault(ContentKey);
        }
        catch (Exception e) when (e is VarSharpException or IOException)
        {
            return null;
        }
        // The content digest is recomputed over what was loaded, so a damaged or edited cache is never scored against.
        bool ok = loaded.TryGetValue("features", out var f) && loaded.TryGetValue("predictions", out var p) && loaded.TryGetValue("labels", out var l)
                  && f.dtype == float32 && f.dim() == 2 && f.shape[0] == count && f.shape[1] == FashionClassifier.FeatureDim
                  && p.dtype == int64 && p.dim() == 1 && p.shape[0] == count
                  && l.dtype == int64 && l.dim() == 1 && l.shape[0] == count && SameValues(l, labels)
                  && recorded == TensorDigest.Of(f, p, l);
        if (!ok)
        {
            foreach (var t in loaded.Values) t.Dispose();
            return null;
        }
        loaded["labels"].Dispose();
        return (loaded["features"], loaded["predictions"]);
    }

    private static bool SameValues(Tensor a, Tensor b)
    {
        using var eq = a.eq(b);
        using var all = eq.all();
        return all.item<bool>();
    }

    private static string? TryWrite(string path, Tensor features, Tensor predictions, Tensor labels)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            SafeTensors.Save(path, [new("features", features), new("predictions", predictions), new("labels", labels)],
                new Dictionary<string, string> { ["format"] = CacheFormat, [ContentKey] = TensorDigest.Of(features, predictions, labels) });
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or VarSharpException)
        {
            // A cache that cannot be written only costs time on the next run, so it is reported, not raised.
            return $"the classifier features were not cached in {Path.GetDirectoryName(path)}: {e.Message.TrimEnd('.')}.";
        }
    }

    public void Dispose()
    {
        Features_ND.Dispose();
        Predictions_N.Dispose();
        Labels_N.Dispose();
    }
}
