using System.Buffers.Binary;
using System.IO.Compression;

namespace VarSharp.Data;

/// <summary>An idx array (the MNIST file format): its dimensions and its unsigned-byte elements in row-major order.</summary>
public sealed record IdxArray(int[] Dims, byte[] Data)
{
    public long Count => Dims[0];
}

/// <summary>
/// Reads idx files (LeCun's MNIST format, also used by Fashion-MNIST), gzip-compressed (.gz) or raw: a 4-byte magic
/// (0, 0, type 0x08 = unsigned byte, number of dimensions), one big-endian int32 per dimension, then the elements.
/// Every field is checked against what follows, so a truncated or foreign file gets a one-sentence error.
/// </summary>
public static class IdxFile
{
    public const byte UnsignedByte = 0x08;

    /// <summary>The largest element count accepted (a .NET array's limit).</summary>
    public const long MaxElements = 0x7FFFFFC7;

    public static IdxArray Read(string path)
    {
        if (!File.Exists(path)) throw PathErrors.FileMissing(path, "Data file");
        try
        {
            using var file = File.OpenRead(path);
            bool gz = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase);
            using Stream stream = gz ? new GZipStream(file, CompressionMode.Decompress) : file;
            return Parse(stream, path);
        }
        catch (InvalidDataException e)
        {
            throw new VarSharpException($"{path} is not a valid gzip file ({e.Message.TrimEnd('.')}).", e);
        }
    }

    /// <summary>Parses an idx stream; <paramref name="path"/> only names it in errors.</summary>
    public static IdxArray Parse(Stream stream, string path)
    {
        Span<byte> magic = stackalloc byte[4];
        int got = ReadFully(stream, magic);
        if (got < 4)
            throw new VarSharpException($"{path} is too short for an idx file: expected a 4-byte magic number but the file has {got} bytes.");
        if (magic[0] != 0 || magic[1] != 0)
            throw new VarSharpException($"{path} is not an idx file: expected the magic number to start with two zero bytes but found 0x{magic[0]:X2}{magic[1]:X2}.");
        if (magic[2] != UnsignedByte)
            throw new VarSharpException($"{path} holds idx element type 0x{magic[2]:X2} but only unsigned bytes (0x08) are supported.");
        int ndims = magic[3];
        if (ndims is < 1 or > 4)
            throw new VarSharpException($"{path} declares {ndims} dimensions; expected 1 to 4.");

        var dimBytes = new byte[4 * ndims];
        got = ReadFully(stream, dimBytes);
        if (got < dimBytes.Length)
            throw new VarSharpException($"{path} is truncated: expected {ndims} dimension sizes ({dimBytes.Length} bytes) after the magic number but found {got} bytes.");
        var dims = new int[ndims];
        long total = 1;
        for (int i = 0; i < ndims; i++)
        {
            int d = BinaryPrimitives.ReadInt32BigEndian(dimBytes.AsSpan(4 * i));
            if (d <= 0) throw new VarSharpException($"{path} declares dimension {i} as {d}; expected a positive size.");
            dims[i] = d;
            total *= d;
            if (total > MaxElements)
                throw new VarSharpException($"{path} declares [{string.Join(", ", dims.Take(i + 1))}...] elements, more than the {MaxElements} supported.");
        }

        // A raw file says how much data can follow; a header that declares more is refused before the array is allocated.
        if (stream.CanSeek && total > stream.Length - stream.Position)
            throw new VarSharpException(
                $"{path} is truncated: its header declares [{string.Join(", ", dims)}] = {total} bytes of data but only {stream.Length - stream.Position} follow.");
        var data = stream.CanSeek ? new byte[total] : [];
        got = stream.CanSeek ? ReadFully(stream, data) : ReadGrowing(stream, total, out data);
        if (got < total)
            throw new VarSharpException(
                $"{path} is truncated: its header declares [{string.Join(", ", dims)}] = {total} bytes of data but only {got} follow.");
        Span<byte> extra = stackalloc byte[1];
        if (ReadFully(stream, extra) != 0)
            throw new VarSharpException($"{path} has data beyond the {total} bytes its header [{string.Join(", ", dims)}] declares.");
        return new IdxArray(dims, data);
    }

    /// <summary>Writes a raw or gzip idx file of unsigned bytes (tests and tools).</summary>
    public static void Write(string path, int[] dims, ReadOnlySpan<byte> data)
    {
        using var file = File.Create(path);
        using Stream stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionLevel.Fastest) : file;
        stream.Write([0, 0, UnsignedByte, (byte)dims.Length]);
        Span<byte> d = stackalloc byte[4];
        foreach (var dim in dims)
        {
            BinaryPrimitives.WriteInt32BigEndian(d, dim);
            stream.Write(d);
        }
        stream.Write(data);
    }

    // A compressed stream's length is unknown until it is inflated: the buffer grows with the data that actually arrives,
    // so a 30-byte .gz whose header declares two gigabytes costs a megabyte, not the declared size.
    private static int ReadGrowing(Stream stream, long total, out byte[] data)
    {
        data = new byte[Math.Min(total, 1 << 20)];
        int got = 0;
        while (true)
        {
            got += ReadFully(stream, data.AsSpan(got));
            if (got < data.Length || data.Length == total) return got;
            Array.Resize(ref data, (int)Math.Min(total, 2L * data.Length));
        }
    }

    private static int ReadFully(Stream stream, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = stream.Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }
}
