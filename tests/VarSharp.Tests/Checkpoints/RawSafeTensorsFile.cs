using System.Buffers.Binary;
using System.Text;

namespace VarSharp.Tests.Checkpoints;

/// <summary>Writes safetensors files byte by byte, bypassing our writer, so tests can craft files that break one rule.</summary>
internal static class RawSafeTensorsFile
{
    public static string Write(string path, string headerJson, int dataBytes, ulong? headerLengthField = null) =>
        Write(path, Encoding.UTF8.GetBytes(headerJson), new byte[dataBytes], headerLengthField);

    public static string Write(string path, byte[] header, byte[] data, ulong? headerLengthField = null)
    {
        var prefix = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, headerLengthField ?? (ulong)header.Length);
        File.WriteAllBytes(path, [.. prefix, .. header, .. data]);
        return path;
    }
}
