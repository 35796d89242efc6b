namespace VarSharp.Checkpoints;

/// <summary>
/// Checks that the entries' byte ranges are exactly what their dtype and shape need and that, together, they cover the
/// data buffer once: no byte read twice, none unaccounted for. Anything less lets a crafted file alias tensors or hide
/// data the loader never looks at.
/// </summary>
internal static class SafeTensorsLayout
{
    public static void Validate(IReadOnlyList<SafeTensorEntry> entries, long bufferLength, string file)
    {
        foreach (var e in entries)
        {
            if (e.Begin < 0 || e.End < e.Begin || e.End > bufferLength)
                throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.OffsetsOutOfBounds, file,
                    $"expected tensor '{e.Name}' data_offsets to satisfy 0 <= begin <= end <= {bufferLength} (the data size) but found [{e.Begin}, {e.End}]");
            var expected = ExpectedBytes(e);
            if (e.End - e.Begin != expected)
                throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.SizeMismatch, file,
                    $"expected tensor '{e.Name}' ({e.DType}, shape [{string.Join(", ", e.Shape)}]) to span {expected} bytes but its data_offsets [{e.Begin}, {e.End}] span {e.End - e.Begin}");
        }

        long cursor = 0;
        SafeTensorEntry? previous = null;
        foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (e.Begin < cursor)
                throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.Overlap, file,
                    $"expected tensor '{e.Name}' to start at or after byte {cursor}, where '{previous!.Name}' ends, but it starts at {e.Begin}");
            if (e.Begin > cursor)
                throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.Gap, file, previous is null
                    ? $"expected the first tensor '{e.Name}' to start at byte 0 but it starts at {e.Begin}"
                    : $"expected tensor '{e.Name}' to start at byte {cursor}, where '{previous.Name}' ends, but it starts at {e.Begin}");
            cursor = e.End;
            previous = e;
        }
        if (cursor != bufferLength)
            throw SafeTensorsHeaderJson.Fail(SafeTensorsRule.TrailingBytes, file,
                $"expected the data to end at byte {cursor}, where the last tensor ends, but {bufferLength - cursor} more bytes follow");
    }

    public static long ExpectedBytes(SafeTensorEntry e)
    {
        SafeTensorDTypes.TryGet(e.DType, out _, out var size);
        long bytes = size;
        foreach (var dim in e.Shape) bytes = checked(bytes * dim);
        return bytes;
    }
}
