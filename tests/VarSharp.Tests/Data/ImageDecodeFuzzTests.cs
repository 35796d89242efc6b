using StbImageWriteSharp;
using VarSharp.Data;
using VarSharp.Tests.Checkpoints.Fuzz;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Data;

/// <summary>
/// Seeded mutations of small PNG and JPEG files through the path an edit image takes on the server (declared size checked
/// first, then decoded): every case decodes or is refused with our one-sentence error, quickly, never with another
/// exception type, which the server would turn into a 500.
/// </summary>
public class ImageDecodeFuzzTests(ITestOutputHelper output)
{
    private const int Size = 32;

    private static IReadOnlyList<Mutator> Generic(byte[] original) =>
    [
        new("flip", 4, (rng, b) => Mutators.FlipBit(rng, b, 0, b.Length)),
        new("flip-header", 3, (rng, b) => Mutators.FlipBit(rng, b, 0, Math.Min(b.Length, 64))),
        new("set", 3, (rng, b) => Mutators.SetByte(rng, b, 0, b.Length)),
        new("truncate", 2, Mutators.Truncate),
        new("insert", 1, Mutators.Insert),
        new("delete", 1, Mutators.Delete),
    ];

    private static Func<MemoryStream, string, long> DecodeAs(int channels) => (stream, name) =>
    {
        var bytes = stream.ToArray();
        if (ImageIO.DeclaredSize(bytes) is not (Size, Size)) throw new VarSharpException($"{name} does not declare {Size}×{Size} pixels.");
        using var image = ImageIO.Decode(bytes, channels, name);
        if (!image.shape.SequenceEqual(new long[] { 1, channels, Size, Size }))
            throw new InvalidOperationException($"decoded to [{string.Join(", ", image.shape)}]");
        return image.numel() * image.element_size();
    };

    [Fact]
    public void MutatedPngAndJpegFilesDecodeOrAreRefusedCleanly()
    {
        using var img = rand(new long[] { 3, Size, Size }, generator: new Generator(5)).mul(2).sub(1);
        var png = ImageIO.EncodePng(img);
        var rgb = new byte[Size * Size * 3];
        new Random(6).NextBytes(rgb);
        using var jpegStream = new MemoryStream();
        new ImageWriter().WriteJpg(rgb, Size, Size, ColorComponents.RedGreenBlue, jpegStream, 90);
        var jpeg = jpegStream.ToArray();

        // A decoded 32×32 image is at most 12 KiB of floats, so the tensor bound is not what this test is about.
        var reports = FuzzGuard.RunAll(output,
            () => Fuzzer.Run("image.png", png, Generic(png), 2000, 11, DecodeAs(3), nativeFactor: double.PositiveInfinity),
            () => Fuzzer.Run("image.png (gray)", png, Generic(png), 1000, 12, DecodeAs(1), nativeFactor: double.PositiveInfinity),
            () => Fuzzer.Run("image.jpg", jpeg, Generic(jpeg), 2000, 13, DecodeAs(3), nativeFactor: double.PositiveInfinity));
        Assert.True(reports.Sum(r => r.Loaded) > 0, "some mutations should still decode");
        Assert.True(reports.Sum(r => r.Cases - r.Loaded) > 0, "some mutations should be refused");
    }

    /// <summary>The two cases the fuzzing found, kept as plain tests: each is refused at once with the reason named.</summary>
    [Fact]
    public void LengthsPastTheEndAreRefusedBeforeDecoding()
    {
        using var img = rand(new long[] { 1, Size, Size }, generator: new Generator(2)).mul(2).sub(1);
        var png = ImageIO.EncodePng(img);
        // The first chunk after the signature is IHDR (length 13); a length of a gigabyte would make the decoder allocate it.
        var huge = (byte[])png.Clone();
        huge[8] = 0x40;
        var e = Assert.Throws<VarSharpException>(() => ImageIO.Decode(huge, 1, "huge.png"));
        Assert.Equal($"huge.png is not a readable PNG or JPEG image (its IHDR chunk declares {0x4000000D} bytes but only {png.Length - 20} follow).", e.Message);

        var rgb = new byte[Size * Size * 3];
        using var jpegStream = new MemoryStream();
        new ImageWriter().WriteJpg(rgb, Size, Size, ColorComponents.RedGreenBlue, jpegStream, 90);
        var jpeg = jpegStream.ToArray();
        // The first segment's length (bytes 4–5) made to point far past the end: the decoder would seek there and spin.
        jpeg[4] = 0x20;
        int length = jpeg[4] << 8 | jpeg[5];
        e = Assert.Throws<VarSharpException>(() => ImageIO.Decode(jpeg, 3, "far.jpg"));
        Assert.Equal($"far.jpg is not a readable PNG or JPEG image (segment FF{jpeg[3]:X2} declares {length} bytes but only {jpeg.Length - 4} follow).", e.Message);

        e = Assert.Throws<VarSharpException>(() => ImageIO.Decode("BM not an image we take"u8.ToArray(), 3, "x.bmp"));
        Assert.Equal("x.bmp is not a readable PNG or JPEG image (not a PNG or JPEG file).", e.Message);
    }

    private static byte[] Chunk(string type, byte[] body)
    {
        var chunk = new byte[12 + body.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(chunk, (uint)body.Length);
        System.Text.Encoding.ASCII.GetBytes(type, chunk.AsSpan(4));
        body.CopyTo(chunk, 8);
        return chunk;   // CRC left zero: nothing here gets as far as checking it
    }

    /// <summary>
    /// A chunk header in the last 8 bytes (no room for its CRC) is still a chunk, and image data that inflates far past
    /// what the declared size needs is a decompression bomb: both refused before the decoder allocates for them.
    /// </summary>
    [Fact]
    public void ATruncatedChunkHeaderAndACompressionBombAreRefused()
    {
        using var img = rand(new long[] { 1, Size, Size }, generator: new Generator(3)).mul(2).sub(1);
        var png = ImageIO.EncodePng(img);
        // Drop IEND (its 12 bytes) and end with the header of an IDAT chunk that claims half a gigabyte.
        byte[] tail = [.. png.AsSpan(0, png.Length - 12), 0x20, 0x00, 0x00, 0x00, .. "IDAT"u8];
        var e = Assert.Throws<VarSharpException>(() => ImageIO.Decode(tail, 1, "tail.png"));
        Assert.Equal("tail.png is not a readable PNG or JPEG image (its IDAT chunk declares 536870912 bytes but only 0 follow).", e.Message);

        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(ihdr, Size);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), Size);
        ihdr[8] = 8;   // 8-bit grey, no interlace
        using var packed = new MemoryStream();
        using (var z = new System.IO.Compression.ZLibStream(packed, System.IO.Compression.CompressionLevel.SmallestSize, leaveOpen: true))
            z.Write(new byte[16 << 20]);
        byte[] bomb = [.. png.AsSpan(0, 8), .. Chunk("IHDR", ihdr), .. Chunk("IDAT", packed.ToArray()), .. Chunk("IEND", [])];
        Assert.True(bomb.Length < 64 * 1024, $"the bomb should be small ({bomb.Length} bytes)");
        e = Assert.Throws<VarSharpException>(() => ImageIO.Decode(bomb, 1, "bomb.png"));
        Assert.Equal($"bomb.png is not a readable PNG or JPEG image (its image data inflates past the {Size * (1 + 8 * Size) + 7 * (Size + 8)} bytes a 32×32 image can need).", e.Message);

        // The same bomb behind a zlib header whose window field (15) zlib refuses but the decoder ignores.
        byte[] badWindow = [.. packed.ToArray()];
        (badWindow[0], badWindow[1]) = (0xF8, 0x00);   // CINFO 15, FCHECK still valid: 0xF800 % 31 == 0
        byte[] hidden = [.. png.AsSpan(0, 8), .. Chunk("IHDR", ihdr), .. Chunk("IDAT", badWindow), .. Chunk("IEND", [])];
        e = Assert.Throws<VarSharpException>(() => ImageIO.Decode(hidden, 1, "hidden.png"));
        Assert.StartsWith("hidden.png is not a readable PNG or JPEG image (its image data is not a valid zlib stream (", e.Message);
    }
}
