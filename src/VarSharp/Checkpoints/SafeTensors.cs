using System.Buffers.Binary;
using TorchSharp;

namespace VarSharp.Checkpoints;

/// <summary>What <see cref="SafeTensors.LoadHashed"/> read: the kept tensors, the header's metadata, and the whole file's SHA-256 and length.</summary>
public sealed record HashedTensors(Dictionary<string, torch.Tensor> Tensors, IReadOnlyDictionary<string, string>? Metadata, string Sha256, long Bytes);

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header, then raw tensor
/// bytes. Nothing read from a file is trusted until the whole header has been validated against the file's size.
/// </summary>
public static class SafeTensors
{
    /// <summary>The reference implementation's cap; a larger header is far more likely an attack than a model.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public static SafeTensorsHeader ReadHeader(string path)
    {
        using var stream = OpenRead(path);
        return ReadHeader(stream, path);
    }

    /// <summary>Loads every tensor, keeping the file's dtypes, in header order.</summary>
    public static Dictionary<string, torch.Tensor> Load(string path, torch.Device? device = null)
    {
        using var stream = OpenRead(path);
        return Load(stream, path, device);
    }

    /// <summary>Loads every tensor from a seekable stream (tests feed mutated bytes this way without touching disk).</summary>
    internal static Dictionary<string, torch.Tensor> Load(Stream stream, string path, torch.Device? device = null)
    {
        var header = ReadHeader(stream, path);
        var result = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var entry in header.Entries)
                result.Add(entry.Name, ReadTensor(stream, header, entry, device, path));
        }
        catch
        {
            foreach (var tensor in result.Values) tensor.Dispose();
            throw;
        }
        return result;
    }

    /// <summary>
    /// Loads the tensors <paramref name="keep"/> selects (on the CPU) in one forward pass over the file and returns
    /// them with the SHA-256 and length of the whole file as it was read: the digest covers exactly the bytes the tensors
    /// came from, so checking it against a manifest leaves no moment in which the file could change unseen.
    /// </summary>
    public static HashedTensors LoadHashed(string path, Func<string, bool> keep)
    {
        ArgumentNullException.ThrowIfNull(keep);
        using var file = OpenRead(path);
        using var stream = new HashingReadStream(file);
        var header = ReadHeader(stream, path);
        var result = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        try
        {
            // Data order, not header order: the pass only moves forward (the layout has no gaps or overlaps).
            foreach (var entry in header.Entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
            {
                if (keep(entry.Name)) result.Add(entry.Name, ReadTensor(stream, header, entry, device: null, path));
                else stream.Seek(header.DataStart + entry.End, SeekOrigin.Begin);
            }
            stream.Seek(stream.Length, SeekOrigin.Begin);
            return new HashedTensors(result, header.Metadata, stream.Sha256(), stream.Position);
        }
        catch
        {
            foreach (var tensor in result.Values) tensor.Dispose();
            throw;
        }
    }

    /// <summary>Loads one tensor using a header already read from the same file.</summary>
    public static torch.Tensor LoadTensor(string path, SafeTensorsHeader header, string name, torch.Device? device = null)
    {
        var entry = header.Find(name)
            ?? throw new VarSharpException($"{path}: expected a tensor named '{name}' but the header's {header.Entries.Count} tensors do not include it.");
        using var stream = OpenRead(path);
        if (stream.Length != header.DataStart + header.DataLength)
            throw new VarSharpException(
                $"{path}: expected {header.DataStart + header.DataLength} bytes as the given header describes but the file has {stream.Length}, so it changed or the header is another file's.");
        return ReadTensor(stream, header, entry, device, path);
    }

    /// <summary>
    /// Writes the tensors in the given order, atomically: a crash leaves either the old file or the new one, never half
    /// of one, because the bytes go to a temporary file in the same folder that is flushed to disk and then renamed.
    /// </summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        SafeTensorsWriter.Save(path, tensors, metadata);

    internal static SafeTensorsHeader ReadHeader(Stream stream, string path)
    {
        RequireLittleEndianHost();
        long fileLength = stream.Length;
        if (fileLength < 8)
            throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.HeaderTooShort, path, $"expected at least 8 bytes for the header length but the file has {fileLength}");

        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > MaxHeaderBytes)
            throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.HeaderTooLarge, path, $"expected a header of at most {MaxHeaderBytes} bytes but its length field says {headerLength}");
        if ((long)headerLength > fileLength - 8)
            throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.HeaderTooLarge, path, $"expected a header of at most {fileLength - 8} bytes (what follows the length field) but its length field says {headerLength}");

        var json = new byte[headerLength];
        stream.ReadExactly(json);
        var (entries, metadata) = SafeTensorsHeaderJson.Parse(json, path);
        long dataStart = 8 + (long)headerLength;
        SafeTensorsLayout.Validate(entries, fileLength - dataStart, path);
        return new SafeTensorsHeader(entries, metadata, dataStart);
    }

    private static torch.Tensor ReadTensor(Stream stream, SafeTensorsHeader header, SafeTensorEntry entry, torch.Device? device, string path)
    {
        var tensor = torch.empty(entry.Shape, SafeTensorDTypes.ScalarType(entry.DType));
        try
        {
            stream.Seek(header.DataStart + entry.Begin, SeekOrigin.Begin);
            TensorBytes.ReadInto(tensor, stream);
            if (tensor.dtype == torch.ScalarType.Bool && TensorBytes.FirstNonBool(tensor) is var (i, b))
                throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.BadBool, path, $"expected BOOL tensor '{entry.Name}' to hold bytes 0 and 1 but element {i} is {b}");
            if (device is null || device.type == DeviceType.CPU) return tensor;
            var moved = tensor.to(device);
            tensor.Dispose();
            return moved;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    // bufferSize 1 turns off FileStream's own buffer: tensor bytes are read in large chunks straight into native memory.
    private static FileStream OpenRead(string path)
    {
        // Opening a directory fails with "access denied", which sends users hunting for a permissions problem.
        if (Directory.Exists(path))
            throw new VarSharpException($"{path}: expected a safetensors file but found a directory.");
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
    }

    internal static void RequireLittleEndianHost()
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors stores little-endian bytes and VarSharp does not byte-swap them, so big-endian hosts are not supported.");
    }
}
