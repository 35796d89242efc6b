namespace VarSharp.Checkpoints;

/// <summary>One tensor described by a safetensors header; <see cref="Begin"/>/<see cref="End"/> are relative to the data buffer.</summary>
public sealed record SafeTensorEntry(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
}
