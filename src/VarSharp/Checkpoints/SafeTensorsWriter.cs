using System.Buffers;
using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using TorchSharp;

namespace VarSharp.Checkpoints;

/// <summary>Writes safetensors files the way the reference writer lays them out, so other tools read them unchanged.</summary>
internal static class SafeTensorsWriter
{
    public static void Save(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        SafeTensors.RequireLittleEndianHost();
        var list = tensors.ToList();
        var entries = PlanEntries(list, path);
        var header = BuildHeader(entries, metadata);

        var fullPath = Path.GetFullPath(path);
        var temp = Path.Combine(Path.GetDirectoryName(fullPath)!, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        using var tracked = TemporaryPaths.Track(temp);
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1))
            {
                Span<byte> prefix = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
                stream.Write(prefix);
                stream.Write(header);
                foreach (var (_, tensor) in list) WriteTensor(tensor, stream);
                stream.Flush(flushToDisk: true);
            }
            tracked.Publish(() => File.Move(temp, fullPath, overwrite: true));
        }
        catch
        {
            DeleteQuietly(temp);
            throw;
        }
    }

    // The original failure matters more than a leftover temporary file, so cleanup never replaces it.
    private static void DeleteQuietly(string temp)
    {
        try { File.Delete(temp); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static List<SafeTensorEntry> PlanEntries(List<KeyValuePair<string, torch.Tensor>> tensors, string path)
    {
        var entries = new List<SafeTensorEntry>(tensors.Count);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var (name, tensor) in tensors)
        {
            if (name == SafeTensorsHeaderJson.MetadataKey)
                throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.BadEntry, path, $"expected tensor names other than the reserved '{name}' but one tensor uses it");
            if (!seen.Add(name))
                throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.DuplicateName, path, $"expected each tensor name once but '{name}' is given more than once");
            if (!SafeTensorDTypes.TryGetName(tensor.dtype, out var dtype))
                throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.UnknownDType, path, $"expected tensor '{name}' to have one of the dtypes {SafeTensorDTypes.KnownList} but it is {tensor.dtype}");
            long bytes = checked(tensor.numel() * tensor.element_size());
            entries.Add(new SafeTensorEntry(name, dtype, tensor.shape, offset, offset + bytes));
            offset = checked(offset + bytes);
        }
        return entries;
    }

    // Padding with spaces to a multiple of 8 keeps the data buffer 8-byte aligned, as the reference writer does.
    private static byte[] BuildHeader(List<SafeTensorEntry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(SafeTensorsHeaderJson.MetadataKey);
                foreach (var (key, value) in metadata) json.WriteString(key, value);
                json.WriteEndObject();
            }
            foreach (var e in entries)
            {
                json.WriteStartObject(e.Name);
                json.WriteString("dtype", e.DType);
                json.WriteStartArray("shape");
                foreach (var dim in e.Shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(e.Begin);
                json.WriteNumberValue(e.End);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        int padded = (buffer.WrittenCount + 7) / 8 * 8;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }

    private static void WriteTensor(torch.Tensor tensor, Stream stream)
    {
        // Only tensors created here are disposed; detach/cpu/contiguous may hand back the caller's own tensor.
        using var scope = torch.NewDisposeScope();
        var cpu = tensor.detach().cpu().contiguous();
        TensorBytes.WriteFrom(cpu, stream);
    }
}
