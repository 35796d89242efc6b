namespace VarSharp.Data;

/// <summary>Which part of a dataset: the training images, or the held-out images used for evaluation.</summary>
public enum DataSplit
{
    Train,
    Test,
}

/// <summary>
/// A finite, indexable set of images already shaped for one tokenizer: every sample is Channels × ImageSize × ImageSize
/// floats in [−1, 1] (CHW). Implementations are safe to read from one worker thread while the owner reads metadata.
/// </summary>
public interface IImageDataset
{
    /// <summary>What the data is, for logs ("Fashion-MNIST train (60000 images) from …").</summary>
    string Description { get; }
    int Count { get; }
    int Channels { get; }
    int ImageSize { get; }
    IReadOnlyList<string> ClassNames { get; }
    DataIssues Issues { get; }

    int Label(int index);

    /// <summary>
    /// SHA-256 (hex) of what the samples are made of, so that a resumed run can tell the same data from other data of the
    /// same size: an idx set's pixel and label bytes; an image folder's files (path under the root, label, length).
    /// </summary>
    string Fingerprint { get; }

    /// <summary>
    /// Whether a training sample depends on its augmentation key (random crops or flips). When false,
    /// <see cref="Fill"/> gives the same pixels for every key, so anything derived from a sample (its tokens under a
    /// frozen tokenizer) can be computed once and cached.
    /// </summary>
    bool Augments => true;

    /// <summary>
    /// When a horizontal flip is the only augmentation: whether <paramref name="augmentKey"/> mirrors the sample, so that
    /// a sample has just two views and both can be prepared once (a frozen tokenizer's tokens of each). Null when
    /// augmentation does more (random crops): then views cannot be enumerated.
    /// </summary>
    bool? FlipsFor(ulong augmentKey) => null;

    /// <summary>
    /// Writes sample <paramref name="index"/> into <paramref name="destination"/> (Channels·ImageSize² floats, CHW, in
    /// [−1, 1]). <paramref name="augmentKey"/> null gives the deterministic evaluation view (center crop, no flip);
    /// otherwise it seeds the sample's random crop and flip, so the result is a pure function of (index, key).
    /// </summary>
    void Fill(int index, ulong? augmentKey, Span<float> destination);

    /// <summary>
    /// The indices a held-out measurement of <paramref name="n"/> images uses: the first n where the order means nothing
    /// (the idx files are in no class order); an image folder, listed class by class, spreads them over every class.
    /// </summary>
    IReadOnlyList<int> HeldOut(int n) => Enumerable.Range(0, Math.Clamp(n, 0, Count)).ToArray();
}

/// <summary>Unreadable files met while scanning or decoding a dataset; counted, with the first few named.</summary>
public sealed class DataIssues
{
    private const int MaxNamed = 5;
    private readonly object gate = new();
    private readonly List<string> examples = [];
    private int skippedAtScan;
    private readonly HashSet<string> undecodable = new(StringComparer.Ordinal);

    /// <summary>Files left out when the dataset was opened (not an image, truncated header, unreadable).</summary>
    public int SkippedAtScan { get { lock (gate) return skippedAtScan; } }

    /// <summary>Files whose pixels failed to decode during training, each counted once however often it was met; the next sample of the same class was used instead.</summary>
    public int FailedDecodes { get { lock (gate) return undecodable.Count; } }

    public IReadOnlyList<string> Examples { get { lock (gate) return examples.ToArray(); } }

    internal void Skipped(string what)
    {
        lock (gate)
        {
            skippedAtScan++;
            if (examples.Count < MaxNamed) examples.Add(what);
        }
    }

    internal void DecodeFailed(string what)
    {
        lock (gate)
        {
            // The same file comes back every epoch (and from the prefetch worker): a file is one issue, not one per read.
            if (undecodable.Add(what) && examples.Count < MaxNamed) examples.Add(what);
        }
    }

    public override string ToString()
    {
        lock (gate)
            return skippedAtScan == 0 && undecodable.Count == 0
                ? "no unreadable files"
                : $"{skippedAtScan} unreadable files skipped, {undecodable.Count} files that failed to decode replaced by the next image of their class (e.g. {string.Join("; ", examples)})";
    }
}
