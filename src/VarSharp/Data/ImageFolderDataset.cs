namespace VarSharp.Data;

/// <summary>How an image folder becomes tokenizer-sized samples.</summary>
/// <param name="Resize">Resize the shorter side to round(size × <paramref name="MidRatio"/>) (Lanczos) and crop to size, as the
/// reference's utils/data.py does; when false every image must already be size × size.</param>
/// <param name="HFlip">Random horizontal flips for training samples (off by default, as in the reference).</param>
/// <param name="Strict">Fail on the first unreadable file instead of skipping and counting it.</param>
/// <param name="MidRatio">The reference's mid_reso factor, 1.125.</param>
public sealed record ImageFolderOptions(bool Resize = true, bool HFlip = false, bool Strict = false, double MidRatio = 1.125);

/// <summary>
/// An ImageNet-layout folder: ROOT/train/CLASS/*.png|jpg and ROOT/val/CLASS/…, or ROOT/CLASS/… directly. Without a
/// val folder every 20th training file (in sorted order) is held out as the test split. Training samples are resized
/// (shorter side), randomly cropped and optionally flipped; test samples are center-cropped. Grayscale files become
/// RGB for 3-channel models and RGB files become luma for 1-channel models, as <see cref="ImageIO"/> does.
/// </summary>
public sealed class ImageFolderDataset : IImageDataset
{
    public const int HoldOutEvery = 20;
    private static readonly string[] Extensions = [".png", ".jpg", ".jpeg"];

    private readonly (string Path, int Label)[] items;
    private readonly ImageFolderOptions options;
    private readonly int midSize;

    private ImageFolderDataset(string listedDir, string description, (string, int)[] items, IReadOnlyList<string> classNames, int channels, int imageSize,
        ImageFolderOptions options, DataIssues issues)
    {
        this.items = items;
        fingerprint = new Lazy<string>(() => ComputeFingerprint(listedDir));
        this.options = options;
        Description = description;
        ClassNames = classNames;
        Channels = channels;
        ImageSize = imageSize;
        Issues = issues;
        midSize = MidSize(imageSize, options);
    }

    public string Description { get; }
    public int Count => items.Length;

    /// <summary>Evenly spaced over the set, so that every class takes part: the items are sorted by class.</summary>
    public IReadOnlyList<int> HeldOut(int n) =>
        n >= Count ? Enumerable.Range(0, Count).ToArray() : Enumerable.Range(0, Math.Max(n, 0)).Select(i => (int)((long)i * Count / n)).ToArray();
    public int Channels { get; }
    public int ImageSize { get; }
    public IReadOnlyList<string> ClassNames { get; }
    public DataIssues Issues { get; }

    public int Label(int index) => items[index].Label;

    public string Fingerprint => fingerprint.Value;

    private readonly Lazy<string> fingerprint;

    // Paths relative to the folder the files were listed from, so that a copied or moved dataset is the same data;
    // lengths catch replaced files without reading every byte of a large set.
    private string ComputeFingerprint(string root)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var (path, label) in items)
        {
            long length = File.Exists(path) ? new FileInfo(path).Length : -1;
            var relative = Path.GetRelativePath(root, path).Replace('\\', '/');
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes($"{relative}|{label}|{length}\n"));
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Resized images are cropped at random (the longer side always leaves room); flips only with HFlip.</summary>
    public bool Augments => options.HFlip || options.Resize;

    /// <summary>The file behind sample <paramref name="index"/>.</summary>
    public string PathOf(int index) => items[index].Path;

    /// <summary>Whether <paramref name="root"/> looks like an image folder (has subfolders or image files).</summary>
    // The shorter side's size before the crop: the reference resizes to mid_reso · size, then crops size.
    private static int MidSize(int imageSize, ImageFolderOptions options) => (int)Math.Round(imageSize * options.MidRatio, MidpointRounding.ToEven);

    public static bool LooksLikeImageFolder(string root) =>
        Directory.Exists(root) && (Directory.EnumerateDirectories(root).Any() || ImageFiles(root, recursive: false).Any());

    /// <summary>Scans one split of an image folder, checking every file's header; unreadable files are skipped and counted (or fail with Strict).</summary>
    public static ImageFolderDataset Open(string root, DataSplit split, int channels, int imageSize, ImageFolderOptions? options = null)
    {
        options ??= new ImageFolderOptions();
        if (!Directory.Exists(root)) throw PathErrors.FolderMissing(root, "Image folder");
        if (channels is not (1 or 3)) throw new VarSharpException($"Images can have 1 or 3 channels but {channels} were asked for.");
        if (options.Resize && !(MidSize(imageSize, options) >= imageSize))
            throw new VarSharpException($"The resize ratio {options.MidRatio} would make images smaller than the {imageSize}-pixel crop; it must be at least 1.");
        string trainDir = Directory.Exists(Path.Combine(root, "train")) ? Path.Combine(root, "train") : root;
        string? valDir = Directory.Exists(Path.Combine(root, "val")) ? Path.Combine(root, "val") : null;

        var (classNames, trainFiles) = ListClasses(trainDir);
        if (trainFiles.Count == 0)
            throw new VarSharpException($"No PNG or JPEG images found under {trainDir}; expected one subfolder per class holding .png/.jpg files.");
        List<(string, int)> files;
        string what;
        if (valDir is not null)
        {
            if (split == DataSplit.Train) { files = trainFiles; what = trainDir; }
            else
            {
                var (valClasses, valFiles) = ListClasses(valDir);
                var unknown = valClasses.Where(c => !classNames.Contains(c)).ToList();
                if (unknown.Count > 0)
                    throw new VarSharpException($"{valDir} has class folder '{unknown[0]}' that {trainDir} lacks; expected the same classes in both.");
                var map = valClasses.Select(c => classNames.IndexOf(c)).ToArray();
                files = valFiles.Select(f => (f.Item1, map[f.Item2])).ToList();
                what = valDir;
            }
        }
        else
        {
            files = trainFiles.Where((_, i) => (i % HoldOutEvery == HoldOutEvery - 1) == (split == DataSplit.Test)).ToList();
            what = $"{trainDir} ({(split == DataSplit.Train ? "all but" : "held out:")} every {HoldOutEvery}th file)";
        }
        if (files.Count == 0)
            throw new VarSharpException($"The {split.ToString().ToLowerInvariant()} split of {what} has no images.");

        var issues = new DataIssues();
        var kept = new List<(string, int)>(files.Count);
        (int W, int H)? firstSize = null;
        string? firstPath = null;
        foreach (var (path, label) in files)
        {
            var info = ReadInfo(path);
            if (info is null)
            {
                if (options.Strict) throw new VarSharpException($"{path} is not a readable PNG or JPEG image (strict mode stops at the first unreadable file).");
                issues.Skipped(path);
                continue;
            }
            var size = (info.Value.W, info.Value.H);
            if ((long)size.W * size.H > ImageIO.MaxPixels)
            {
                if (options.Strict) throw ImageIO.TooLarge(path, size.W, size.H);
                issues.Skipped(path);
                continue;
            }
            if (options.Resize && Resampler.TryShorterSideTo(size.W, size.H, MidSize(imageSize, options), ImageIO.MaxPixels) is null)
            {
                if (options.Strict) throw ImageIO.TooLargeResized(path, size.W, size.H, MidSize(imageSize, options));
                issues.Skipped(path);
                continue;
            }
            if (!options.Resize)
            {
                if (firstSize is { } fs && fs != size)
                    throw new VarSharpException(
                        $"Images under {what} have different sizes ({firstPath} is {fs.W}×{fs.H}, {path} is {size.W}×{size.H}) and resizing is off; enable resizing or make them all {imageSize}×{imageSize}.");
                firstSize ??= size;
                firstPath ??= path;
            }
            kept.Add((path, label));
        }
        if (kept.Count == 0)
            throw new VarSharpException($"None of the {files.Count} image files under {what} is readable (e.g. {issues.Examples.FirstOrDefault()}).");
        if (!options.Resize && firstSize is { } only && (only.W != imageSize || only.H != imageSize))
            throw new VarSharpException(
                $"Images under {what} are {only.W}×{only.H} but the model takes {imageSize}×{imageSize} and resizing is off; enable resizing or supply {imageSize}×{imageSize} images.");
        var description = $"image folder {what}: {kept.Count} images in {classNames.Count} classes" +
                          (issues.SkippedAtScan > 0 ? $", {issues.SkippedAtScan} unreadable skipped" : "");
        // Paths in the fingerprint are relative to the folder listed, so that --data ROOT and --data ROOT/train (the same
        // images when ROOT has no val/) are the same data.
        string listed = split == DataSplit.Test && valDir is not null ? valDir : trainDir;
        return new ImageFolderDataset(listed, description, kept.ToArray(), classNames, channels, imageSize, options, issues);
    }

    public void Fill(int index, ulong? augmentKey, Span<float> destination)
    {
        int s = ImageSize, plane = s * s;
        if (destination.Length != Channels * plane)
            throw new ArgumentException($"expected a destination of {Channels * plane} floats but got {destination.Length}", nameof(destination));
        // A file that fails to decode is replaced by the next one of the same class, so the sample keeps Label(index).
        int label = items[index].Label, at = index;
        for (int attempt = 0; attempt < items.Length; attempt++, at = (at + 1) % items.Length)
        {
            if (items[at].Label != label) continue;
            var decoded = Decode(items[at].Path);
            if (decoded is null)
            {
                if (options.Strict) throw new VarSharpException($"{items[at].Path} could not be decoded (strict mode stops at the first unreadable file).");
                Issues.DecodeFailed(items[at].Path);
                continue;
            }
            Place(decoded.Value, augmentKey, destination, items[at].Path);
            return;
        }
        throw new VarSharpException($"No image of class '{ClassNames[label]}' in {Description} could be decoded.");
    }

    private void Place((byte[] Pixels, int W, int H) img, ulong? augmentKey, Span<float> destination, string path)
    {
        int s = ImageSize, plane = s * s, c = Channels;
        var (pixels, w, h) = img;
        if (options.Resize)
        {
            var (nw, nh) = Resampler.TryShorterSideTo(w, h, midSize, ImageIO.MaxPixels) ?? throw ImageIO.TooLargeResized(path, w, h, midSize);
            if (nw != w || nh != h)
            {
                pixels = Resampler.Resize(pixels, w, h, c, nw, nh);
                (w, h) = (nw, nh);
            }
        }
        else if (w != s || h != s)
            throw new VarSharpException($"{path} is {w}×{h} but the model takes {s}×{s} and resizing is off.");

        int top, left;
        bool flip = false;
        if (augmentKey is { } key)
            (top, left, flip) = View(key, w, h);
        else
        {
            top = (int)Math.Round((h - s) / 2.0, MidpointRounding.ToEven);
            left = (int)Math.Round((w - s) / 2.0, MidpointRounding.ToEven);
        }
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < s; y++)
                for (int x = 0; x < s; x++)
                {
                    int sx = left + (flip ? s - 1 - x : x);
                    destination[ch * plane + y * s + x] = pixels[((top + y) * w + sx) * c + ch] / 127.5f - 1f;
                }
    }

    // The crop and flip a key selects for a w×h image (after any resize).
    private (int Top, int Left, bool Flip) View(ulong key, int w, int h)
    {
        var rng = new SplitMix(key);
        int top = rng.NextInt(h - ImageSize + 1);
        int left = rng.NextInt(w - ImageSize + 1);
        return (top, left, options.HFlip && (rng.Next() & 1) == 1);
    }

    /// <summary>Without resizing every image is the model's size, so there is no crop to draw and a flip is all a key decides.</summary>
    public bool? FlipsFor(ulong augmentKey) => options.Resize ? null : View(augmentKey, ImageSize, ImageSize).Flip;

    private (byte[] Pixels, int W, int H)? Decode(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            var image = ImageIO.DecodeUnchecked(stream, Channels, path);
            if (image?.Data is null || image.Width <= 0 || image.Height <= 0) return null;
            return (image.Data, image.Width, image.Height);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IOException or InvalidDataException or NotSupportedException
                                       or IndexOutOfRangeException or UnauthorizedAccessException or VarSharpException)
        {
            return null;
        }
    }

    private static (int W, int H)? ReadInfo(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            return ImageIO.DeclaredSize(stream);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IOException or NotSupportedException or IndexOutOfRangeException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Class names (sorted subfolders; the folder itself when it has none) and files with labels, in sorted order.</summary>
    private static (List<string> Classes, List<(string, int)> Files) ListClasses(string dir)
    {
        var subdirs = Directory.EnumerateDirectories(dir).Select(Path.GetFileName).OfType<string>()
            .Where(n => !n.StartsWith('.')).OrderBy(n => n, StringComparer.Ordinal).ToList();
        if (subdirs.Count == 0)
            return ([Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)))], ImageFiles(dir, recursive: false).Select(f => (f, 0)).ToList());
        var files = new List<(string, int)>();
        for (int label = 0; label < subdirs.Count; label++)
            files.AddRange(ImageFiles(Path.Combine(dir, subdirs[label]), recursive: true).Select(f => (f, label)));
        return (subdirs, files);
    }

    private static IEnumerable<string> ImageFiles(string dir, bool recursive) =>
        Directory.EnumerateFiles(dir, "*", recursive ? SearchOption.AllDirectories : SearchOption.TopDirectoryOnly)
            .Where(f => Extensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
            .OrderBy(f => f, StringComparer.Ordinal);
}
