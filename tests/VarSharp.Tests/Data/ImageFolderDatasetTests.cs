using VarSharp.Data;
using VarSharp.Tests.Support;
using static TorchSharp.torch;

namespace VarSharp.Tests.Data;

public class ImageFolderDatasetTests
{
    private static void Png(string path, int w, int h, int channels, float value = 0)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var img = linspace(-1, 1, w * h).reshape(1, h, w).add(value).clamp(-1, 1).expand(channels, h, w).contiguous();
        ImageIO.SavePng(path, img);
    }

    [Fact]
    public void EmptyFolderIsAClearError()
    {
        using var tmp = new TempFolder();
        Directory.CreateDirectory(tmp.File("empty/cats"));
        var e = Assert.Throws<VarSharpException>(() => ImageFolderDataset.Open(tmp.File("empty"), DataSplit.Train, 3, 8));
        Assert.Contains("No PNG or JPEG images", e.Message);
        Assert.Contains("does not exist", Assert.Throws<VarSharpException>(() => Datasets.Open(tmp.File("missing"), DataSplit.Train, 3, 8)).Message);
    }

    [Fact]
    public void MixedSizesWithoutResizeAreAClearError()
    {
        using var tmp = new TempFolder();
        Png(tmp.File("d/a/1.png"), 8, 8, 3);
        Png(tmp.File("d/b/2.png"), 10, 8, 3);
        var off = new ImageFolderOptions(Resize: false);
        var e = Assert.Throws<VarSharpException>(() => ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 3, 8, off));
        Assert.Contains("different sizes", e.Message);
        // With resizing both become 8×8 samples.
        var set = ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 3, 8, new ImageFolderOptions(Resize: true));
        Assert.Equal(2, set.Count);
        Assert.Equal(["a", "b"], set.ClassNames);
    }

    [Fact]
    public void UnreadableFilesAreCountedOrFailInStrictMode()
    {
        using var tmp = new TempFolder();
        for (int i = 0; i < 3; i++) Png(tmp.File($"d/train/c/{i}.png"), 8, 8, 1);
        File.WriteAllText(tmp.File("d/train/c/broken.png"), "not a png");
        Png(tmp.File("d/val/c/v.png"), 8, 8, 1);
        var set = ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 1, 8);
        Assert.Equal(3, set.Count);
        Assert.Equal(1, set.Issues.SkippedAtScan);
        Assert.Contains("broken.png", set.Issues.ToString());
        var e = Assert.Throws<VarSharpException>(() => ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 1, 8, new ImageFolderOptions(Strict: true)));
        Assert.Contains("broken.png", e.Message);
        Assert.Equal(1, ImageFolderDataset.Open(tmp.File("d"), DataSplit.Test, 1, 8).Count);
    }

    /// <summary>A valid small PNG whose IHDR (CRC fixed up) claims <paramref name="w"/>×<paramref name="h"/> pixels.</summary>
    internal static void ClaimSize(string path, int w, int h)
    {
        var bytes = File.ReadAllBytes(path);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(16), w);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(20), h);
        uint crc = 0xFFFFFFFF;
        foreach (var b in bytes.AsSpan(12, 17))   // chunk type + 13 data bytes
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(29), ~crc);
        File.WriteAllBytes(path, bytes);
    }

    [Fact]
    public void AnImageThatClaimsTooManyPixelsIsNeverDecoded()
    {
        using var tmp = new TempFolder();
        for (int i = 0; i < 2; i++) Png(tmp.File($"d/train/c/{i}.png"), 8, 8, 1);
        Png(tmp.File("d/train/c/bomb.png"), 8, 8, 1);
        ClaimSize(tmp.File("d/train/c/bomb.png"), 30000, 30000);
        Png(tmp.File("d/val/c/v.png"), 8, 8, 1);

        var e = Assert.Throws<VarSharpException>(() => ImageIO.Load(tmp.File("d/train/c/bomb.png"), 1));
        Assert.Equal($"{tmp.File("d/train/c/bomb.png")} declares 30000×30000 pixels, more than the 67 megapixels an input image may have.", e.Message);
        var set = ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 1, 8);
        Assert.Equal(2, set.Count);
        Assert.Contains("bomb.png", set.Issues.ToString());
        var strict = Assert.Throws<VarSharpException>(() => ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 1, 8, new ImageFolderOptions(Strict: true)));
        Assert.Equal(e.Message, strict.Message);
    }

    /// <summary>A 1×65536 strip is a small file, but resized so its shorter side is 256 it would be 256×16,777,216.</summary>
    [Fact]
    public void AnImageThatResizingWouldBlowUpIsRefusedBeforeResizing()
    {
        using var tmp = new TempFolder();
        for (int i = 0; i < 2; i++) Png(tmp.File($"d/train/c/{i}.png"), 8, 8, 1);
        Png(tmp.File("d/train/c/strip.png"), 1, 65536, 1);
        var strip = tmp.File("d/train/c/strip.png");

        var e = Assert.Throws<VarSharpException>(() => ImageIO.LoadFitted(strip, 1, 256));
        Assert.Equal($"{strip} is 1×65536 pixels, so resizing its shorter side to 256 would make more than the 67 megapixels an image may have.", e.Message);
        var set = ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 1, 256);
        Assert.Equal(2, set.Count);
        Assert.Contains("strip.png", set.Issues.ToString());
        var strict = Assert.Throws<VarSharpException>(() => ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 1, 256, new ImageFolderOptions(Strict: true)));
        Assert.StartsWith($"{strip} is 1×65536 pixels, so resizing its shorter side to ", strict.Message);
        // The bound itself, and an ordinary resize under it.
        Assert.Null(Resampler.TryShorterSideTo(1, 65536, 256, ImageIO.MaxPixels));
        Assert.Equal((256, 512), Resampler.TryShorterSideTo(100, 200, 256, ImageIO.MaxPixels));
    }

    /// <summary>An image folder lists its images class by class: a held-out sample must reach every class, not the first.</summary>
    [Fact]
    public void AHeldOutSampleSpreadsOverEveryClass()
    {
        using var tmp = new TempFolder();
        foreach (var c in new[] { "a", "b", "c" })
            for (int i = 0; i < 4; i++) Png(tmp.File($"d/train/{c}/{i}.png"), 8, 8, 1);
        var set = ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 1, 8);
        var held = set.HeldOut(3);
        Assert.Equal([0, 4, 8], held);
        Assert.Equal([0, 1, 2], held.Select(set.Label));
        Assert.Equal(Enumerable.Range(0, 12), set.HeldOut(50));   // more than there are: all of them
        // Idx data is in no class order: its first n.
        var plain = Datasets.Open(TinyData.WriteIdxFolder(tmp.File("idx")), DataSplit.Train, 1, 8);
        Assert.Equal([0, 1, 2], plain.HeldOut(3));
    }

    [Fact]
    public void AFileThatFailsToDecodeIsCountedOnceHoweverOftenItIsRead()
    {
        using var tmp = new TempFolder();
        for (int i = 0; i < 3; i++) Png(tmp.File($"d/train/c/{i}.png"), 8, 8, 1);
        Png(tmp.File("d/val/c/v.png"), 8, 8, 1);
        // PNG signature and IHDR intact: the file passes the header scan, then fails to decode.
        var whole = File.ReadAllBytes(tmp.File("d/train/c/0.png"));
        File.WriteAllBytes(tmp.File("d/train/c/z.png"), whole.AsSpan(0, whole.Length - 16).ToArray());
        var set = ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 1, 8);
        Assert.Equal(4, set.Count);
        var pixels = new float[64];
        for (int k = 0; k < 3; k++) set.Fill(3, null, pixels);
        Assert.Equal(1, set.Issues.FailedDecodes);
        Assert.Single(set.Issues.Examples, p => p.EndsWith("z.png", StringComparison.Ordinal));

        var strict = ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 1, 8, new ImageFolderOptions(Strict: true));
        Assert.Contains("z.png", Assert.Throws<VarSharpException>(() => strict.Fill(3, null, pixels)).Message);
    }

    /// <summary>
    /// A file that fails to decode at the end of its class (sorted order) is replaced by the next image of the same
    /// class, wrapping around, never by the following class's first image: the sample keeps the label it is trained on.
    /// </summary>
    [Fact]
    public void AnUndecodableFileIsReplacedByAnImageOfItsOwnClass()
    {
        using var tmp = new TempFolder();
        Png(tmp.File("d/train/a/0.png"), 8, 8, 1, value: -0.5f);
        Png(tmp.File("d/train/a/1.png"), 8, 8, 1, value: 0.25f);
        Png(tmp.File("d/train/b/0.png"), 8, 8, 1, value: 0.75f);
        Png(tmp.File("d/val/a/v.png"), 8, 8, 1);
        var whole = File.ReadAllBytes(tmp.File("d/train/a/1.png"));
        File.WriteAllBytes(tmp.File("d/train/a/z.png"), whole.AsSpan(0, whole.Length - 16).ToArray());
        var set = ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 1, 8);
        Assert.Equal(4, set.Count);
        int broken = Enumerable.Range(0, set.Count).Single(i => set.PathOf(i).EndsWith("z.png", StringComparison.Ordinal));
        Assert.Equal(0, set.Label(broken));
        Assert.Equal(1, set.Label(broken + 1));

        float[] Pixels(int i)
        {
            var p = new float[64];
            set.Fill(i, null, p);
            return p;
        }
        Assert.Equal(Pixels(0), Pixels(broken));
        Assert.NotEqual(Pixels(broken + 1), Pixels(broken));
    }

    [Fact]
    public void ResizesShorterSideThenCropsAndConvertsGrayToRgb()
    {
        using var tmp = new TempFolder();
        Png(tmp.File("d/c/wide.png"), 40, 20, 1);
        var set = ImageFolderDataset.Open(tmp.File("d"), DataSplit.Train, 3, 16);
        var center = new float[3 * 16 * 16];
        set.Fill(0, null, center);
        Assert.True(center.All(v => v >= -1 && v <= 1));
        Assert.Equal(center[..256], center[256..512]); // replicated channels
        // A horizontal ramp: the center crop's middle column is near the ramp's middle value (≈ 0).
        Assert.InRange(center[8 * 16 + 8], -0.2f, 0.2f);
        // Random crops are a pure function of the key and vary with it.
        var a = new float[center.Length];
        var b = new float[center.Length];
        set.Fill(0, 1, a);
        set.Fill(0, 1, b);
        Assert.Equal(a, b);
        var crops = Enumerable.Range(0, 8).Select(k => { var x = new float[center.Length]; set.Fill(0, (ulong)k, x); return x[0]; }).Distinct().Count();
        Assert.True(crops > 1);
    }

    [Fact]
    public void LanczosResizeKeepsAConstantImageAndFollowsTorchvisionSizes()
    {
        var flat = Enumerable.Repeat((byte)77, 30 * 20 * 3).ToArray();
        var r = Resampler.Resize(flat, 30, 20, 3, 13, 9);
        Assert.All(r, v => Assert.Equal(77, v));
        Assert.Equal((36, 72), Resampler.ShorterSideTo(50, 100, 36));
        Assert.Equal((54, 36), Resampler.ShorterSideTo(61, 40, 36));
    }
}
