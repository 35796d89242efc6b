using System.IO.Compression;
using VarSharp.Data;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Data;

public class IdxFileTests
{
    private static byte[] Header(byte type, params int[] dims)
    {
        var b = new List<byte> { 0, 0, type, (byte)dims.Length };
        foreach (var d in dims) b.AddRange([(byte)(d >> 24), (byte)(d >> 16), (byte)(d >> 8), (byte)d]);
        return b.ToArray();
    }

    private static string Write(TempFolder tmp, string name, byte[] bytes, bool gzip = false)
    {
        var path = tmp.File(name + (gzip ? ".gz" : ""));
        if (!gzip) File.WriteAllBytes(path, bytes);
        else
        {
            using var f = File.Create(path);
            using var z = new GZipStream(f, CompressionLevel.Fastest);
            z.Write(bytes);
        }
        return path;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReadsWhatWasWritten(bool gzip)
    {
        using var tmp = new TempFolder();
        var data = Enumerable.Range(0, 2 * 3 * 4).Select(i => (byte)i).ToArray();
        var path = Write(tmp, "x-idx3-ubyte", [.. Header(0x08, 2, 3, 4), .. data], gzip);
        var a = IdxFile.Read(path);
        Assert.Equal([2, 3, 4], a.Dims);
        Assert.Equal(data, a.Data);
    }

    [Theory]
    [InlineData("short", "too short")]
    [InlineData("magic", "two zero bytes")]
    [InlineData("type", "element type 0x0D")]
    [InlineData("ndims", "declares 0 dimensions")]
    [InlineData("dims-cut", "dimension sizes")]
    [InlineData("zero-dim", "expected a positive size")]
    [InlineData("truncated", "only 10 follow")]
    [InlineData("trailing", "data beyond")]
    [InlineData("not-gzip", "not a valid gzip")]
    public void RejectsBadFilesWithOneSentence(string kind, string expected)
    {
        using var tmp = new TempFolder();
        byte[] good = [.. Header(0x08, 3, 4), .. new byte[12]];
        var (bytes, gz) = kind switch
        {
            "short" => (new byte[] { 0, 0 }, false),
            "magic" => ([1, 0, 8, 2, .. good[4..]], false),
            "type" => (Header(0x0D, 3, 4), false),
            "ndims" => (new byte[] { 0, 0, 8, 0 }, false),
            "dims-cut" => (good[..6], false),
            "zero-dim" => (Header(0x08, 3, 0), false),
            "truncated" => (good[..(good.Length - 2)], true),
            "trailing" => ([.. good, 7], false),
            _ => (good, false),
        };
        var path = kind == "not-gzip" ? Write(tmp, "bad-idx1-ubyte.gz", good) : Write(tmp, "bad-idx1-ubyte", bytes, gz);
        var e = Assert.Throws<VarSharpException>(() => IdxFile.Read(path));
        Assert.Contains(expected, e.Message);
        Assert.Contains(path, e.Message);
    }

    /// <summary>A gzip stream cannot say how much follows, so the declared size must not be allocated up front.</summary>
    [Fact]
    public void ACompressedFileDeclaringGigabytesCostsWhatItHolds()
    {
        using var tmp = new TempFolder();
        var path = Write(tmp, "bomb-idx1-ubyte", [.. Header(0x08, (int)IdxFile.MaxElements), 1, 2, 3], gzip: true);
        Assert.True(new FileInfo(path).Length < 64);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<VarSharpException>(() => IdxFile.Read(path));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal($"{path} is truncated: its header declares [{IdxFile.MaxElements}] = {IdxFile.MaxElements} bytes of data but only 3 follow.", e.Message);
        Assert.True(allocated < 8 << 20, $"reading a {new FileInfo(path).Length}-byte file allocated {allocated} bytes");

        // Data past a megabyte still arrives whole through the growing buffer.
        var data = Enumerable.Range(0, 3_000_001).Select(i => (byte)(i * 7)).ToArray();
        var big = IdxFile.Read(Write(tmp, "big-idx1-ubyte", [.. Header(0x08, data.Length), .. data], gzip: true));
        Assert.Equal(data, big.Data);
    }

    [Fact]
    public void MissingFileAndMismatchedLabelCountsAreClearErrors()
    {
        using var tmp = new TempFolder();
        Assert.Contains("does not exist", Assert.Throws<VarSharpException>(() => IdxFile.Read(tmp.File("nope.gz"))).Message);
        var dir = TinyData.WriteIdxFolder(tmp.File("d"), train: 6, test: 2, size: 8);
        IdxFile.Write(Path.Combine(dir, "train-labels-idx1-ubyte.gz"), [5], new byte[5]);
        var e = Assert.Throws<VarSharpException>(() => FashionMnist.Load(dir, DataSplit.Train, 1, 8));
        Assert.Contains("holds 6 images but", e.Message);
        IdxFile.Write(Path.Combine(dir, "train-labels-idx1-ubyte.gz"), [6], [0, 1, 2, 3, 4, 10]);
        Assert.Contains("label 10", Assert.Throws<VarSharpException>(() => FashionMnist.Load(dir, DataSplit.Train, 1, 8)).Message);
        Assert.Contains("padded, never shrunk", Assert.Throws<VarSharpException>(() => FashionMnist.Load(dir, DataSplit.Test, 1, 4)).Message);
    }

    [Fact]
    public void PadsWithBlackAndReplicatesChannels()
    {
        using var tmp = new TempFolder();
        var dir = tmp.File("d");
        Directory.CreateDirectory(dir);
        foreach (var prefix in new[] { "train", "t10k" })
        {
            IdxFile.Write(Path.Combine(dir, $"{prefix}-images-idx3-ubyte"), [1, 2, 2], [0, 255, 51, 102]);
            IdxFile.Write(Path.Combine(dir, $"{prefix}-labels-idx1-ubyte"), [1], [9]);
        }
        var set = FashionMnist.Load(dir, DataSplit.Train, channels: 3, imageSize: 4);
        var x = new float[3 * 16];
        set.Fill(0, null, x);
        float[] plane = [-1, -1, -1, -1, -1, -1, 1, -1, -1, 51 / 127.5f - 1, 102 / 127.5f - 1, -1, -1, -1, -1, -1];
        Assert.Equal(plane.Concat(plane).Concat(plane), x);
        Assert.Equal("Ankle boot", set.ClassNames[set.Label(0)]);
    }

    [Fact]
    public void ReadsTheInstalledFashionMnistTestSplit()
    {
        if (!FashionMnist.IsIdxFolder(FashionMnist.DefaultDirectory)) return; // not installed: scripts/setup.sh installs it
        var set = FashionMnist.Load(FashionMnist.DefaultDirectory, DataSplit.Test, channels: 1, imageSize: 32);
        Assert.Equal(10000, set.Count);
        Assert.Equal(10, set.ClassNames.Count);
        var x = new float[32 * 32];
        set.Fill(0, null, x);
        Assert.Equal(-1f, x[0]);
        Assert.True(x.Max() > 0.5f);
        Assert.Equal(Enumerable.Range(0, 10), Enumerable.Range(0, set.Count).Select(set.Label).Distinct().Order());
    }
}
