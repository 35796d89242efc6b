namespace VarSharp.Data;

/// <summary>
/// Fashion-MNIST (Zalando; Debian package dataset-fashion-mnist): 60000 training and 10000 test images, 28×28
/// grayscale, ten clothing classes, stored as gzip idx files. Images are padded to the tokenizer's size with the
/// background value −1 (black) — the VAR tokenizer needs a power-of-two multiple of its patch grid, 28 is not.
/// </summary>
public static class FashionMnist
{
    public const string DefaultDirectory = "/usr/share/datasets/fashion-mnist";

    public static IReadOnlyList<string> ClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>Whether <paramref name="dir"/> holds the idx files of the training split (gzip or raw).</summary>
    public static bool IsIdxFolder(string dir) => FindFile(dir, "train", "images-idx3") is not null;

    /// <summary>Opens one split of an idx folder, padded to <paramref name="imageSize"/>, replicated to <paramref name="channels"/>.</summary>
    public static IdxImageDataset Load(string dir, DataSplit split, int channels, int imageSize, bool hflip = false)
    {
        if (!Directory.Exists(dir))
            throw new VarSharpException($"Fashion-MNIST folder {dir} does not exist (install it with: apt-get install dataset-fashion-mnist).");
        string prefix = split == DataSplit.Train ? "train" : "t10k";
        var imagesPath = FindFile(dir, prefix, "images-idx3")
            ?? throw new VarSharpException($"{dir} has no {prefix}-images-idx3-ubyte(.gz); expected the Fashion-MNIST idx files there.");
        var labelsPath = FindFile(dir, prefix, "labels-idx1")
            ?? throw new VarSharpException($"{dir} has no {prefix}-labels-idx1-ubyte(.gz); expected the Fashion-MNIST idx files there.");
        var images = IdxFile.Read(imagesPath);
        var labels = IdxFile.Read(labelsPath);
        return new IdxImageDataset($"Fashion-MNIST {prefix}", imagesPath, images, labelsPath, labels, ClassNames, channels, imageSize, hflip);
    }

    private static string? FindFile(string dir, string prefix, string kind)
    {
        foreach (var name in new[] { $"{prefix}-{kind}-ubyte.gz", $"{prefix}-{kind}-ubyte" })
        {
            var p = Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        return null;
    }
}

/// <summary>Grayscale images from an idx array (N, H, W) with labels (N), padded to a square of the tokenizer's size.</summary>
public sealed class IdxImageDataset : IImageDataset
{
    private readonly byte[] pixels;
    private readonly byte[] labels;
    private readonly int height, width, padTop, padLeft;
    private readonly bool hflip;

    public IdxImageDataset(string name, string imagesPath, IdxArray images, string labelsPath, IdxArray labelArray,
        IReadOnlyList<string> classNames, int channels, int imageSize, bool hflip)
    {
        if (images.Dims.Length != 3)
            throw new VarSharpException($"{imagesPath} has dimensions [{string.Join(", ", images.Dims)}]; expected images as [count, height, width].");
        if (labelArray.Dims.Length != 1)
            throw new VarSharpException($"{labelsPath} has dimensions [{string.Join(", ", labelArray.Dims)}]; expected labels as [count].");
        if (labelArray.Dims[0] != images.Dims[0])
            throw new VarSharpException($"{imagesPath} holds {images.Dims[0]} images but {labelsPath} holds {labelArray.Dims[0]} labels; expected the same count.");
        if (channels is not (1 or 3)) throw new VarSharpException($"Images can have 1 or 3 channels but {channels} were asked for.");
        height = images.Dims[1];
        width = images.Dims[2];
        if (height > imageSize || width > imageSize)
            throw new VarSharpException($"{imagesPath} holds {height}×{width} images but the model takes {imageSize}×{imageSize}; idx images are padded, never shrunk.");
        for (int i = 0; i < labelArray.Data.Length; i++)
            if (labelArray.Data[i] >= classNames.Count)
                throw new VarSharpException($"{labelsPath} has label {labelArray.Data[i]} at index {i}; expected labels below {classNames.Count}.");
        pixels = images.Data;
        labels = labelArray.Data;
        Count = images.Dims[0];
        Channels = channels;
        ImageSize = imageSize;
        ClassNames = classNames;
        padTop = (imageSize - height) / 2;
        padLeft = (imageSize - width) / 2;
        this.hflip = hflip;
        fingerprint = new Lazy<string>(ComputeFingerprint);
        Description = $"{name} ({Count} images {height}×{width}, padded to {imageSize}×{imageSize}) from {Path.GetDirectoryName(imagesPath)}";
    }

    public string Description { get; }
    public int Count { get; }
    public int Channels { get; }
    public int ImageSize { get; }
    public IReadOnlyList<string> ClassNames { get; }
    public DataIssues Issues { get; } = new();

    public int Label(int index) => labels[index];

    public string Fingerprint => fingerprint.Value;

    private readonly Lazy<string> fingerprint;

    private string ComputeFingerprint()
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes($"idx|{Count}|{height}|{width}\n"));
        hash.AppendData(pixels);
        hash.AppendData(labels);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Only horizontal flips (when asked for) vary; padding is fixed.</summary>
    public bool Augments => hflip;

    /// <summary>Padding is fixed, so a flip (when asked for) is the whole augmentation: the key's first bit decides it.</summary>
    public bool? FlipsFor(ulong augmentKey) => hflip && (new SplitMix(augmentKey).Next() & 1) == 1;

    public void Fill(int index, ulong? augmentKey, Span<float> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        int s = ImageSize, plane = s * s;
        if (destination.Length != Channels * plane)
            throw new ArgumentException($"expected a destination of {Channels * plane} floats but got {destination.Length}", nameof(destination));
        bool flip = augmentKey is { } key && FlipsFor(key) == true;
        var first = destination[..plane];
        first.Fill(-1f);
        var src = pixels.AsSpan(index * height * width, height * width);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int sx = flip ? width - 1 - x : x;
                first[(y + padTop) * s + x + padLeft] = src[y * width + sx] / 127.5f - 1f;
            }
        for (int c = 1; c < Channels; c++) first.CopyTo(destination.Slice(c * plane, plane));
    }
}
