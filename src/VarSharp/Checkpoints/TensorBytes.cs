using TorchSharp;

namespace VarSharp.Checkpoints;

/// <summary>
/// Moves raw tensor bytes between a stream and a CPU tensor's native memory in bounded chunks, so a multi-GB tensor never
/// needs a managed array of its size (and never hits Span's 2 GB limit).
/// </summary>
internal static class TensorBytes
{
    public const int DefaultChunkBytes = 16 << 20;

    /// <summary>Fills a contiguous CPU tensor from the stream's current position.</summary>
    public static void ReadInto(torch.Tensor tensor, Stream source, int chunkBytes = DefaultChunkBytes) =>
        ForEachChunk(tensor, chunkBytes, span => source.ReadExactly(span));

    /// <summary>Like <see cref="ReadInto(torch.Tensor, Stream, int)"/>, showing each chunk to <paramref name="observe"/> once it is read (to checksum it).</summary>
    public static void ReadInto(torch.Tensor tensor, Stream source, SpanAction observe, int chunkBytes = DefaultChunkBytes) =>
        ForEachChunk(tensor, chunkBytes, span =>
        {
            source.ReadExactly(span);
            observe(span);
        });

    /// <summary>
    /// The first element of a bool tensor whose byte is neither 0 nor 1, with that byte, or null. Such a byte is what a
    /// hostile file can hold but a bool cannot mean: torch would read it as true in some ops and compare it unequal to
    /// true in others.
    /// </summary>
    public static (long Index, byte Value)? FirstNonBool(torch.Tensor tensor)
    {
        long at = 0;
        (long, byte)? found = null;
        ForEachChunk(tensor, DefaultChunkBytes, span =>
        {
            if (found is not null) return;
            int i = span.IndexOfAnyExcept((byte)0, (byte)1);
            if (i >= 0) found = (at + i, span[i]);
            at += span.Length;
        });
        return found;
    }

    /// <summary>Writes a contiguous CPU tensor's bytes at the stream's current position.</summary>
    public static void WriteFrom(torch.Tensor tensor, Stream destination, int chunkBytes = DefaultChunkBytes) =>
        ForEachChunk(tensor, chunkBytes, span => destination.Write(span));

    public delegate void SpanAction(Span<byte> span);

    private static void ForEachChunk(torch.Tensor tensor, int chunkBytes, SpanAction action)
    {
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
            throw new ArgumentException("expected a contiguous CPU tensor", nameof(tensor));
        long count = tensor.numel();
        if (count == 0) return;

        // Narrowed views of a flat view share the tensor's storage, so each chunk's span points straight into it.
        using var flat = tensor.view(-1);
        long perChunk = Math.Max(1, chunkBytes / tensor.element_size());
        for (long start = 0; start < count; start += perChunk)
        {
            using var part = flat.narrow(0, start, Math.Min(perChunk, count - start));
            action(part.bytes);
        }
    }
}
