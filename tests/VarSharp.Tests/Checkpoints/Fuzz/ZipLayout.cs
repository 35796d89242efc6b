using System.Buffers.Binary;
using System.Text;
using VarSharp.Checkpoints.Torch;

namespace VarSharp.Tests.Checkpoints.Fuzz;

/// <summary>Where things are in a known-good zip checkpoint, so mutations can target (and re-checksum) one record.</summary>
internal sealed class ZipLayout
{
    public sealed record Entry(string Name, int CentralOffset, int LocalOffset, int DataOffset, int Size, bool Descriptor);

    public List<Entry> Entries { get; } = [];
    public int CentralStart { get; }
    public int EndRecord { get; }

    public ZipLayout(byte[] zip)
    {
        EndRecord = zip.Length - 22;
        if (BinaryPrimitives.ReadUInt32LittleEndian(zip.AsSpan(EndRecord)) != 0x06054b50) throw new InvalidOperationException("no end record");
        int count = BinaryPrimitives.ReadUInt16LittleEndian(zip.AsSpan(EndRecord + 10));
        CentralStart = (int)BinaryPrimitives.ReadUInt32LittleEndian(zip.AsSpan(EndRecord + 16));
        int p = CentralStart;
        for (int i = 0; i < count; i++)
        {
            var h = zip.AsSpan(p);
            int size = (int)BinaryPrimitives.ReadUInt32LittleEndian(h[20..]);
            int nameLen = BinaryPrimitives.ReadUInt16LittleEndian(h[28..]);
            int extraLen = BinaryPrimitives.ReadUInt16LittleEndian(h[30..]);
            int commentLen = BinaryPrimitives.ReadUInt16LittleEndian(h[32..]);
            int local = (int)BinaryPrimitives.ReadUInt32LittleEndian(h[42..]);
            string name = Encoding.UTF8.GetString(h.Slice(46, nameLen));
            var lh = zip.AsSpan(local);
            bool descriptor = (BinaryPrimitives.ReadUInt16LittleEndian(lh[6..]) & 8) != 0;
            int data = local + 30 + BinaryPrimitives.ReadUInt16LittleEndian(lh[26..]) + BinaryPrimitives.ReadUInt16LittleEndian(lh[28..]);
            Entries.Add(new Entry(name, p, local, data, size, descriptor));
            p += 46 + nameLen + extraLen + commentLen;
        }
    }

    public Entry Pickle => Entries.Single(e => e.Name.EndsWith("/data.pkl", StringComparison.Ordinal));

    public IEnumerable<Entry> Records => Entries.Where(e => e.Name.Contains("/data/", StringComparison.Ordinal) && e.Size > 0);

    /// <summary>Recomputes an entry's CRC-32 after its bytes changed, everywhere the zip stores it.</summary>
    public static void FixCrc(byte[] zip, Entry e)
    {
        uint crc = Crc32.Compute(zip.AsSpan(e.DataOffset, e.Size));
        BinaryPrimitives.WriteUInt32LittleEndian(zip.AsSpan(e.CentralOffset + 16), crc);
        if (e.Descriptor)
        {
            int at = e.DataOffset + e.Size;
            if (BinaryPrimitives.ReadUInt32LittleEndian(zip.AsSpan(at)) == 0x08074b50) at += 4;
            BinaryPrimitives.WriteUInt32LittleEndian(zip.AsSpan(at), crc);
        }
        else BinaryPrimitives.WriteUInt32LittleEndian(zip.AsSpan(e.LocalOffset + 14), crc);
    }
}
