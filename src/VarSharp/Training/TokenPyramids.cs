using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using VarSharp.Checkpoints;
using VarSharp.Data;
using VarSharp.Tokenizer;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>
/// The token pyramids of a dataset's images under a frozen tokenizer: for every image its L token ids (all scales,
/// coarse to fine, concatenated) and its class label. Computed in fixed chunks of <see cref="Chunk"/> images in eval
/// mode without gradients (so the result does not depend on the training batch size), held as int32 (N, L), and
/// optionally cached in a safetensors file whose name and metadata carry the tokenizer's digest and the data's identity.
/// </summary>
public sealed class TokenPyramids : IDisposable
{
    /// <summary>Images tokenized together.</summary>
    public const int Chunk = 256;

    private const string Format = "varsharp-token-pyramids";

    private TokenPyramids(Tensor tokens, long[] labels)
    {
        Tokens = tokens;
        Labels = labels;
    }

    /// <summary>Token ids (N, L) int32, scales concatenated.</summary>
    public Tensor Tokens { get; }

    public long[] Labels { get; }

    public int Count => Labels.Length;

    public long Length => Tokens.shape[1];

    /// <summary>
    /// SHA-256 (hex) of a module's state: every tensor's name, dtype, shape and bytes in name order. It identifies a
    /// tokenizer's weights independently of the file they came from.
    /// </summary>
    public static string Digest(nn.Module module) => Digest(module.state_dict());

    /// <summary><see cref="Digest(nn.Module)"/> of a state given as named tensors (names without a prefix).</summary>
    public static string Digest(IEnumerable<KeyValuePair<string, Tensor>> state)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var (name, t) in state.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            hash.AppendData(Encoding.UTF8.GetBytes($"{name}|{t.dtype}|{string.Join(",", t.shape)}\n"));
            using var c = t.detach().contiguous().cpu();
            hash.AppendData(c.bytes);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>
    /// Tokenizes the first <paramref name="count"/> images of <paramref name="set"/>: their evaluation view (no
    /// augmentation), or with <paramref name="augmentKey"/> the view that key selects for every image (the mirrored
    /// view of a flip-only dataset). <paramref name="progress"/> gets (done, total) after every chunk; cancellation
    /// returns null.
    /// </summary>
    public static TokenPyramids? Compute(VqVae vae, IImageDataset set, int count, Action<int, int>? progress = null, CancellationToken cancel = default,
        ulong? augmentKey = null) =>
        Compute(vae, set, Enumerable.Range(0, Math.Clamp(count, 0, set.Count)).ToArray(), progress, cancel, augmentKey);

    /// <summary><see cref="Compute(VqVae, IImageDataset, int, Action{int, int}?, CancellationToken, ulong?)"/> of the images at <paramref name="indices"/>, in that order.</summary>
    public static TokenPyramids? Compute(VqVae vae, IImageDataset set, IReadOnlyList<int> indices, Action<int, int>? progress = null,
        CancellationToken cancel = default, ulong? augmentKey = null)
    {
        int count = indices.Count;
        int c = set.Channels, s = set.ImageSize, per = c * s * s;
        long L = vae.Config.VPatchNums.Sum(pn => (long)pn * pn);
        bool wasTraining = vae.training;
        vae.eval();
        var tokens = empty(new long[] { count, L }, dtype: ScalarType.Int32);
        try
        {
            using var noGrad = no_grad();
            var pixels = new float[Chunk * per];
            for (int start = 0; start < count; start += Chunk)
            {
                if (cancel.IsCancellationRequested)
                {
                    tokens.Dispose();
                    return null;
                }
                using var scope = NewDisposeScope();
                int n = Math.Min(Chunk, count - start);
                for (int i = 0; i < n; i++) set.Fill(indices[start + i], augmentKey, pixels.AsSpan(i * per, per));
                var x = tensor(pixels.AsSpan(0, n * per).ToArray(), [n, c, s, s], device: vae.Device);
                var idx = vae.ImageToIndices(x);
                tokens.narrow(0, start, n).copy_(cat(idx, 1));
                progress?.Invoke(start + n, count);
            }
        }
        catch
        {
            tokens.Dispose();
            throw;
        }
        finally
        {
            if (wasTraining) vae.train();
        }
        var labels = new long[count];
        for (int i = 0; i < count; i++) labels[i] = set.Label(indices[i]);
        return new TokenPyramids(tokens, labels);
    }

    /// <summary>
    /// The cache file name for a tokenizer digest and a dataset (its description, size, shape and fingerprint);
    /// <paramref name="view"/> names a view other than the evaluation one ("hflip": every image mirrored).
    /// </summary>
    public static string CacheFileName(string tokenizerDigest, IImageDataset set, string? view = null)
    {
        var key = $"{set.Description}|{set.Count}|{set.Channels}|{set.ImageSize}|{set.Fingerprint}" + (view is null ? "" : $"|{view}");
        var dataDigest = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
        return $"tokens-{tokenizerDigest[..16]}-{dataDigest[..16]}.safetensors";
    }

    /// <summary>Writes the pyramids to <paramref name="path"/> atomically (temporary file, then rename).</summary>
    public void Save(string path, string tokenizerDigest, IImageDataset set, string? view = null)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        using var tracked = TemporaryPaths.Track(temp);
        try
        {
            using var labels = tensor(Labels);
            var metadata = Metadata(tokenizerDigest, set, view);
            metadata[ContentKey] = ContentDigest(Tokens, labels);
            SafeTensors.Save(temp, [new("tokens", Tokens), new("labels", labels)], metadata);
            tracked.Publish(() => File.Move(temp, full, overwrite: true));
        }
        catch
        {
            try { File.Delete(temp); }
            catch (IOException) { }
            throw;
        }
    }

    /// <summary>The metadata key of the SHA-256 over the cached tensors' bytes, checked on every load.</summary>
    private const string ContentKey = "content_sha256";

    /// <summary>
    /// Loads a cache written by <see cref="Save"/> for the same tokenizer and data; null when the file is missing,
    /// unreadable, made for something else, or its tensors do not match the digest it records (the caller recomputes).
    /// <paramref name="ignored"/> says why an existing file was not used.
    /// </summary>
    public static TokenPyramids? TryLoad(string path, string tokenizerDigest, IImageDataset set, long length, out string? ignored, string? view = null)
    {
        ignored = null;
        if (!File.Exists(path)) return null;
        Dictionary<string, Tensor>? loaded = null;
        try
        {
            var header = SafeTensors.ReadHeader(path);
            var expected = Metadata(tokenizerDigest, set, view);
            if (header.Metadata is null || expected.Any(kv => !header.Metadata.TryGetValue(kv.Key, out var v) || v != kv.Value)
                || (view is null && header.Metadata.ContainsKey("view")))
            {
                ignored = "it was made for another tokenizer or other data";
                return null;
            }
            loaded = SafeTensors.Load(path);
            if (!loaded.TryGetValue("tokens", out var tokens) || !loaded.TryGetValue("labels", out var labels)
                || tokens.dtype != ScalarType.Int32 || !tokens.shape.SequenceEqual([set.Count, length])
                || labels.dtype != ScalarType.Int64 || !labels.shape.SequenceEqual([set.Count]))
            {
                ignored = "its tensors do not have the expected names, types or shapes";
                return null;
            }
            // The metadata read above is not trusted for the content: the digest is recomputed over what was loaded.
            if (!header.Metadata.TryGetValue(ContentKey, out var recorded) || recorded != ContentDigest(tokens, labels))
            {
                ignored = "its tokens do not match the content digest it records (corrupt, altered or written by an older version)";
                return null;
            }
            var labelArray = labels.data<long>().ToArray();
            for (int i = 0; i < labelArray.Length; i++)
                if (labelArray[i] != set.Label(i))
                {
                    ignored = $"its label of image {i} differs from the data's";
                    return null;
                }
            loaded.Remove("tokens");
            return new TokenPyramids(tokens, labelArray);
        }
        catch (VarSharpException e)
        {
            ignored = $"it cannot be read ({e.Message})";
            return null;
        }
        finally
        {
            if (loaded is not null) foreach (var t in loaded.Values) t.Dispose();
        }
    }

    /// <summary>SHA-256 over the token ids' bytes, then the labels' bytes.</summary>
    private static string ContentDigest(Tensor tokens, Tensor labels) => TensorDigest.Of(tokens, labels);

    // A plain cache records no view, so caches written before views existed still load.
    private static Dictionary<string, string> Metadata(string tokenizerDigest, IImageDataset set, string? view)
    {
        var metadata = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["tokenizer_sha256"] = tokenizerDigest,
            ["data"] = set.Description,
            ["count"] = set.Count.ToString(CultureInfo.InvariantCulture),
            ["data_fingerprint"] = set.Fingerprint,
        };
        if (view is not null) metadata["view"] = view;
        return metadata;
    }

    /// <summary>Labels (B,) int64 and token ids (B, L) int64 of the given images, on <paramref name="device"/> (default CPU; the pyramids stay on the CPU).</summary>
    public (Tensor Labels, Tensor Tokens) Gather(ReadOnlySpan<int> indices, Device? device = null)
    {
        var idx = new long[indices.Length];
        var labels = new long[indices.Length];
        for (int i = 0; i < indices.Length; i++)
        {
            idx[i] = indices[i];
            labels[i] = Labels[indices[i]];
        }
        using var index = tensor(idx);
        using var rows = Tokens.index_select(0, index);
        return (tensor(labels, device: device), rows.to(ScalarType.Int64, device ?? CPU));
    }

    /// <summary>Splits token ids (B, L) into the per-scale list (B, pn²) the tokenizer's functions take.</summary>
    public static List<Tensor> PerScale(Tensor tokens_BL, IReadOnlyList<int> patchNums)
    {
        var list = new List<Tensor>(patchNums.Count);
        long at = 0;
        foreach (var pn in patchNums)
        {
            list.Add(tokens_BL.narrow(1, at, (long)pn * pn));
            at += (long)pn * pn;
        }
        return list;
    }

    public void Dispose() => Tokens.Dispose();
}
