namespace VarSharp.Checkpoints;

/// <summary>A validated safetensors header: entries in header order, string metadata, and where the data buffer starts.</summary>
public sealed class SafeTensorsHeader
{
    private readonly Dictionary<string, SafeTensorEntry> _byName;

    public SafeTensorsHeader(IReadOnlyList<SafeTensorEntry> entries, IReadOnlyDictionary<string, string> metadata, long dataStart)
    {
        Entries = entries;
        Metadata = metadata;
        DataStart = dataStart;
        _byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
    }

    public IReadOnlyList<SafeTensorEntry> Entries { get; }

    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Absolute file offset of the data buffer: 8 + header length.</summary>
    public long DataStart { get; }

    /// <summary>Total tensor bytes; the buffer is exactly this long because validation demands the entries tile it.</summary>
    public long DataLength => Entries.Count == 0 ? 0 : Entries.Max(e => e.End);

    public SafeTensorEntry? Find(string name) => _byName.GetValueOrDefault(name);
}
