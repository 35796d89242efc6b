using System.Buffers.Binary;
using System.IO.Compression;

namespace VarSharp.Data;

/// <summary>
/// Checks the structure of a PNG or JPEG file before StbImageSharp decodes it. The decoder trusts what a file declares:
/// a PNG chunk that claims a gigabyte makes it allocate a gigabyte from a 3 KB file, a JPEG segment that points past
/// the end makes it read nothing forever (both found by <c>ImageDecodeFuzzTests</c>), and a PNG's compressed data may
/// inflate to gigabytes. Here every declared length must fit inside the file, a PNG's image data must not inflate past
/// what its declared size needs, and anything but PNG or JPEG is refused (the decoder would also take BMP, GIF, PSD and
/// others, each with traps of its own). Throws <see cref="InvalidDataException"/> with the reason.
/// </summary>
internal static class ImageContainer
{
    private static ReadOnlySpan<byte> PngSignature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    public static void Check(ReadOnlySpan<byte> data)
    {
        if (data.StartsWith(PngSignature)) CheckPng(data);
        else if (data.Length >= 2 && data[0] == 0xFF && data[1] == 0xD8) CheckJpeg(data);
        else throw new InvalidDataException("not a PNG or JPEG file");
    }

    private static void CheckPng(ReadOnlySpan<byte> data)
    {
        int pos = PngSignature.Length;
        long width = 0, height = 0;
        var compressed = new MemoryStream();
        // A chunk is length (4) + type (4) + data + CRC (4).
        while (data.Length - pos >= 8)
        {
            uint length = BinaryPrimitives.ReadUInt32BigEndian(data[pos..]);
            var type = System.Text.Encoding.ASCII.GetString(data.Slice(pos + 4, 4));
            // The decoder reads a chunk's header from a tail of 8 bytes too; only an empty IEND may go without its CRC.
            if (type == "IEND" && length == 0) break;
            long remaining = data.Length - pos - 12L;
            if (length > remaining)
                throw new InvalidDataException($"its {Printable(type)} chunk declares {length} bytes but only {Math.Max(0, remaining)} follow");
            var body = data.Slice(pos + 8, (int)length);
            if (type == "IHDR" && length >= 8)
            {
                width = BinaryPrimitives.ReadUInt32BigEndian(body);
                height = BinaryPrimitives.ReadUInt32BigEndian(body[4..]);
            }
            if (type == "IDAT") compressed.Write(body);
            pos += 12 + (int)length;
        }
        CheckInflatedSize(compressed, width, height);
    }

    // Filtered scanlines take at most 1 + 8·width bytes (four 16-bit channels) per row; interlacing adds a filter byte per
    // row of each of its seven passes. Inflating past that bound cannot be a valid image, only a decompression bomb.
    private static void CheckInflatedSize(MemoryStream compressed, long width, long height)
    {
        if (compressed.Length == 0 || width <= 0 || height <= 0) return;   // the decoder refuses these itself
        long bound = height * (1 + 8 * width) + 7 * (height + 8);
        compressed.Position = 0;
        using var inflate = new ZLibStream(compressed, CompressionMode.Decompress);
        var buffer = new byte[64 * 1024];
        long total = 0;
        while (true)
        {
            int n;
            try
            {
                n = inflate.Read(buffer);
            }
            catch (InvalidDataException e)
            {
                // Not left to the decoder: it ignores the header's window size, so a stream zlib refuses at once (a
                // window field of 15, say) would still inflate there, unbounded.
                throw new InvalidDataException($"its image data is not a valid zlib stream ({e.Message.TrimEnd('.')})");
            }
            if (n == 0) return;
            if ((total += n) > bound)
                throw new InvalidDataException($"its image data inflates past the {bound} bytes a {width}×{height} image can need");
        }
    }

    private static void CheckJpeg(ReadOnlySpan<byte> data)
    {
        int pos = 2;
        while (pos < data.Length)
        {
            // The decoder skips stray bytes between segments to the next marker; so does this walk.
            if (data[pos] != 0xFF)
            {
                pos++;
                continue;
            }
            while (pos < data.Length && data[pos] == 0xFF) pos++;   // fill bytes
            if (pos >= data.Length) return;
            byte marker = data[pos++];
            if (marker == 0xD9) return;                               // end of image
            if (marker is 0x01 or (>= 0xD0 and <= 0xD7)) continue;    // markers without a length
            if (data.Length - pos < 2) throw new InvalidDataException($"segment FF{marker:X2} has no length");
            int length = BinaryPrimitives.ReadUInt16BigEndian(data[pos..]);
            int remaining = data.Length - pos;
            if (length < 2 || length > remaining)
                throw new InvalidDataException($"segment FF{marker:X2} declares {length} bytes but only {remaining} follow");
            pos += length;
            if (marker != 0xDA) continue;
            // After a scan header come entropy-coded bytes, up to the next marker that is neither a stuffed 00 nor a restart.
            while (pos + 1 < data.Length && !(data[pos] == 0xFF && data[pos + 1] != 0x00 && data[pos + 1] is not (>= 0xD0 and <= 0xD7)))
                pos++;
            if (pos + 1 >= data.Length) return;   // the scan runs to the end: the decoder decides whether that is enough
        }
    }

    private static string Printable(string type) => type.All(c => c is >= 'A' and <= 'Z' or >= 'a' and <= 'z') ? type : "a";
}
