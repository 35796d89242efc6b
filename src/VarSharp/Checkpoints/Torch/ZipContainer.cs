using System.Buffers.Binary;
using System.Text;

namespace VarSharp.Checkpoints.Torch;

/// <summary>One entry of the central directory, after every declared size has been checked against the file.</summary>
internal sealed record ZipEntry(string Name, uint Crc, long Size, long LocalHeaderOffset, long DataOffset, long SpanEnd);

/// <summary>
/// A minimal, strict reader of the zip container torch.save writes. It never extracts, never inflates and never trusts a
/// size before checking it against the file: only stored (uncompressed) entries are accepted, every entry's local header
/// must agree with the central directory, entries may not overlap or leave the file, names may not climb out of the
/// archive, and every record read is checked against its CRC-32.
/// </summary>
internal sealed class ZipContainer
{
    private const uint LocalHeaderSig = 0x04034b50;
    private const uint CentralHeaderSig = 0x02014b50;
    private const uint EndSig = 0x06054b50;
    private const uint Zip64EndSig = 0x06064b50;
    private const uint Zip64LocatorSig = 0x07064b50;
    private const uint DescriptorSig = 0x08074b50;
    private const int EndSize = 22;
    private const int CentralHeaderSize = 46;
    private const int LocalHeaderSize = 30;
    private const int Zip64LocatorSize = 20;
    private const int Zip64EndMinSize = 56;
    private const ushort TorchPaddingId = 0x4246; // "FB"

    private readonly Stream _stream;
    private readonly string _file;
    private readonly Dictionary<string, ZipEntry> _byName;

    private ZipContainer(Stream stream, string file, List<ZipEntry> entries)
    {
        _stream = stream;
        _file = file;
        Entries = entries;
        _byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
    }

    public IReadOnlyList<ZipEntry> Entries { get; }

    public ZipEntry? Find(string name) => _byName.GetValueOrDefault(name);

    public static bool LooksLikeZip(ReadOnlySpan<byte> start) =>
        start.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(start) is LocalHeaderSig or EndSig;

    /// <summary>Reads and checks the whole directory and every local header; reads no record data.</summary>
    public static ZipContainer Open(Stream stream, string file)
    {
        long length = stream.Length;
        var (cdOffset, cdSize, count) = FindCentralDirectory(stream, file, length);

        // A central header is at least 46 bytes, so the declared count cannot make us allocate more than the file holds.
        if (count > cdSize / CentralHeaderSize)
            throw Corrupt(file, $"the central directory declares {count} entries but its {cdSize} bytes hold at most {cdSize / CentralHeaderSize}");
        if (cdSize > Array.MaxLength)
            throw Fail(TorchCheckpointReason.ResourceLimit, file, $"its central directory declares {cdSize} bytes, more than this reader holds in memory");
        var cd = ReadAt(stream, cdOffset, (int)cdSize, file, "central directory");

        var central = new List<CentralRecord>((int)count);
        var names = new HashSet<string>(StringComparer.Ordinal);
        int pos = 0;
        for (long i = 0; i < count; i++)
        {
            var record = ParseCentralEntry(cd, ref pos, cdOffset, file);
            if (!names.Add(record.Name))
                throw Fail(TorchCheckpointReason.DuplicateEntry, file, $"the zip holds two entries named '{record.Name}'");
            central.Add(record);
        }
        if (pos != cd.Length)
            throw Corrupt(file, $"the central directory's {count} entries end at byte {pos} of its {cd.Length}");

        // Local headers are checked in file order, each bounded by where the next entry starts, so records cannot share
        // bytes (overlapping entries are how zip quines and bombs reuse data) and the headers read add up to at most
        // the file's length however many entries the directory declares.
        var ordered = central.OrderBy(c => c.LocalOffset).ToList();
        var entries = new List<ZipEntry>(ordered.Count);
        for (int i = 0; i < ordered.Count; i++)
        {
            long limit = i + 1 < ordered.Count ? ordered[i + 1].LocalOffset : cdOffset;
            entries.Add(CheckLocalHeader(stream, ordered[i], limit, file));
        }
        return new ZipContainer(stream, file, entries);
    }

    /// <summary>Reads a whole record into memory (for data.pkl and small text records) and checks its CRC-32.</summary>
    public byte[] ReadAll(ZipEntry entry, long maxBytes)
    {
        if (entry.Size > maxBytes)
            throw Fail(TorchCheckpointReason.ResourceLimit, _file, $"record '{entry.Name}' is {entry.Size} bytes, more than the {maxBytes} this reader accepts for it");
        var bytes = ReadAt(_stream, entry.DataOffset, (int)entry.Size, _file, $"record '{entry.Name}'");
        CheckCrc(entry, Crc32.Compute(bytes));
        return bytes;
    }

    /// <summary>Streams a record straight into a contiguous CPU tensor of exactly its size, then checks its CRC-32.</summary>
    public void ReadInto(ZipEntry entry, TorchSharp.torch.Tensor tensor)
    {
        if (checked(tensor.numel() * tensor.element_size()) != entry.Size)
            throw new ArgumentException($"expected a tensor of {entry.Size} bytes", nameof(tensor));
        _stream.Seek(entry.DataOffset, SeekOrigin.Begin);
        var crc = new Crc32();
        TensorBytes.ReadInto(tensor, _stream, span => crc.Append(span));
        CheckCrc(entry, crc.Value);
    }

    private void CheckCrc(ZipEntry entry, uint actual)
    {
        if (actual != entry.Crc)
            throw Fail(TorchCheckpointReason.CrcMismatch, _file,
                $"record '{entry.Name}' has CRC-32 {actual:x8} but the zip directory declares {entry.Crc:x8}, so its bytes are corrupt or were altered");
    }

    private static (long Offset, long Size, long Count) FindCentralDirectory(Stream stream, string file, long length)
    {
        if (length < EndSize)
            throw Corrupt(file, $"the file has {length} bytes, fewer than a zip end record needs");
        int tailLength = (int)Math.Min(length, EndSize + ushort.MaxValue);
        var tail = ReadAt(stream, length - tailLength, tailLength, file, "end of file");

        // The end record is the last 22 bytes plus its comment; the comment length must reach exactly the end of the file.
        int at = -1;
        for (int p = tail.Length - EndSize; p >= 0; p--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(p)) == EndSig
                && BinaryPrimitives.ReadUInt16LittleEndian(tail.AsSpan(p + 20)) == tail.Length - p - EndSize)
            {
                at = p;
                break;
            }
        }
        if (at < 0)
            throw Corrupt(file, "it has no zip end-of-central-directory record, so it is truncated or not a zip file");
        long endPos = length - tailLength + at;
        var end = tail.AsSpan(at, EndSize);
        ushort disk = U16(end, 4), cdDisk = U16(end, 6);
        long entriesHere = U16(end, 8), entries = U16(end, 10);
        long cdSize = U32(end, 12), cdOffset = U32(end, 16);
        long directoryEnd = endPos;

        bool needs64 = disk == 0xFFFF || cdDisk == 0xFFFF || entriesHere == 0xFFFF || entries == 0xFFFF || cdSize == 0xFFFFFFFF || cdOffset == 0xFFFFFFFF;
        long locatorPos = endPos - Zip64LocatorSize;
        bool hasLocator = locatorPos >= 0 && ReadU32At(stream, locatorPos, file) == Zip64LocatorSig;
        if (hasLocator)
        {
            var locator = ReadAt(stream, locatorPos, Zip64LocatorSize, file, "zip64 locator");
            long z64Pos = checked((long)Math.Min(U64(locator, 8), long.MaxValue));
            if (U32(locator, 4) != 0 || U32(locator, 16) > 1)
                throw Corrupt(file, "it declares a multi-disk zip, which torch never writes");
            if (z64Pos < 0 || z64Pos > locatorPos - Zip64EndMinSize)
                throw Corrupt(file, $"its zip64 end record offset {z64Pos} is outside the file");
            var z64 = ReadAt(stream, z64Pos, Zip64EndMinSize, file, "zip64 end record");
            if (U32(z64, 0) != Zip64EndSig)
                throw Corrupt(file, $"no zip64 end record at offset {z64Pos}, where the locator points");
            ulong recordSize = U64(z64, 4);
            if (recordSize < Zip64EndMinSize - 12 || recordSize > (ulong)(locatorPos - z64Pos - 12))
                throw Corrupt(file, $"its zip64 end record declares {recordSize} bytes, which does not fit before the locator");
            if (U32(z64, 16) != 0 || U32(z64, 20) != 0)
                throw Corrupt(file, "it declares a multi-disk zip, which torch never writes");
            ulong e64Here = U64(z64, 24), e64 = U64(z64, 32), size64 = U64(z64, 40), off64 = U64(z64, 48);
            // A count above the file's length cannot be true (each entry takes bytes) and would turn negative as a long.
            if (e64Here != e64 || e64 > (ulong)length || size64 > (ulong)length || off64 > (ulong)length)
                throw Corrupt(file, "its zip64 end record declares entry counts or directory bounds outside the file");
            // The classic record must either say "see zip64" or agree with it.
            if ((entries != 0xFFFF && (ulong)entries != e64) || (cdSize != 0xFFFFFFFF && (ulong)cdSize != size64)
                || (cdOffset != 0xFFFFFFFF && (ulong)cdOffset != off64))
                throw Corrupt(file, "its end record and zip64 end record disagree about the central directory");
            entries = (long)e64;
            entriesHere = (long)e64Here;
            cdSize = (long)size64;
            cdOffset = (long)off64;
            directoryEnd = z64Pos;
        }
        else
        {
            if (needs64)
                throw Corrupt(file, "its end record points to zip64 fields but there is no zip64 locator");
            if (disk != 0 || cdDisk != 0)
                throw Corrupt(file, "it declares a multi-disk zip, which torch never writes");
        }
        if (entriesHere != entries)
            throw Corrupt(file, "it declares a multi-disk zip, which torch never writes");
        if (cdOffset > directoryEnd || cdSize > directoryEnd - cdOffset)
            throw Corrupt(file, $"its central directory (offset {cdOffset}, {cdSize} bytes) does not fit before the end record at {directoryEnd}");
        if (cdSize > int.MaxValue)
            throw Fail(TorchCheckpointReason.ResourceLimit, file, $"its central directory is {cdSize} bytes, more than this reader accepts");
        return (cdOffset, cdSize, entries);
    }

    private static CentralRecord ParseCentralEntry(byte[] cd, ref int pos, long cdOffset, string file)
    {
        if (cd.Length - pos < CentralHeaderSize || U32(cd, pos) != CentralHeaderSig)
            throw Corrupt(file, $"there is no central directory header at byte {pos} of the directory");
        var h = cd.AsSpan(pos, CentralHeaderSize);
        ushort flags = U16(h, 8), method = U16(h, 10);
        uint crc = U32(h, 16);
        long csize = U32(h, 20), usize = U32(h, 24);
        int nameLen = U16(h, 28), extraLen = U16(h, 30), commentLen = U16(h, 32);
        int diskStart = U16(h, 34);
        long localOffset = U32(h, 42);
        int varLen = nameLen + extraLen + commentLen;
        if (cd.Length - pos - CentralHeaderSize < varLen)
            throw Corrupt(file, $"a central directory header at byte {pos} runs past the directory's end");
        var nameBytes = cd.AsSpan(pos + CentralHeaderSize, nameLen);
        var extra = cd.AsSpan(pos + CentralHeaderSize + nameLen, extraLen);
        pos += CentralHeaderSize + varLen;

        string name = DecodeName(nameBytes, flags, file);
        CheckName(name, file);
        if ((flags & 0x0001) != 0 || (flags & 0x0040) != 0)
            throw Fail(TorchCheckpointReason.EncryptedEntry, file, $"entry '{name}' is encrypted, which torch never does");
        if (method != 0)
            throw Fail(TorchCheckpointReason.CompressedEntry, file,
                $"entry '{name}' is compressed (method {method}) but torch stores every record uncompressed, so it is refused rather than inflated");

        // Zip64 extra: only the fields whose 32-bit value is saturated are present, in this order.
        bool needU = usize == 0xFFFFFFFF, needC = csize == 0xFFFFFFFF, needO = localOffset == 0xFFFFFFFF, needD = diskStart == 0xFFFF;
        bool sizes64 = needU || needC;
        var z64 = FindZip64Extra(extra, name, file);
        int zp = 0;
        if (needU) usize = NextZip64(z64, ref zp, name, file);
        if (needC) csize = NextZip64(z64, ref zp, name, file);
        if (needO) localOffset = NextZip64(z64, ref zp, name, file);
        if (needD)
        {
            if (z64.Length - zp < 4) throw Corrupt(file, $"entry '{name}' has a zip64 extra field too short for the values it must hold");
            diskStart = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(z64[zp..]), int.MaxValue);
        }
        if (diskStart != 0)
            throw Corrupt(file, $"entry '{name}' starts on disk {diskStart}, but torch never writes multi-disk zips");
        if (csize != usize)
            throw Corrupt(file, $"stored entry '{name}' declares {csize} bytes on disk but {usize} bytes of content");
        if (localOffset > cdOffset - LocalHeaderSize)
            throw Corrupt(file, $"entry '{name}' has its local header at offset {localOffset}, outside the data area");

        return new CentralRecord(name, nameBytes.ToArray(), method, crc, csize, localOffset, sizes64);
    }

    private sealed record CentralRecord(string Name, byte[] NameBytes, ushort Method, uint Crc, long Size, long LocalOffset, bool Sizes64);

    // Local header: same name, method and (unless a data descriptor follows) the same CRC and sizes, all before `limit`.
    private static ZipEntry CheckLocalHeader(Stream stream, CentralRecord c, long limit, string file)
    {
        var (name, nameBytes, method, crc, csize, localOffset, sizes64) = c;
        if (localOffset > limit - LocalHeaderSize)
            throw Corrupt(file, $"entry '{name}' has its local header at offset {localOffset}, overlapping the next entry or the central directory");
        var lh = ReadAt(stream, localOffset, LocalHeaderSize, file, $"local header of '{name}'");
        if (U32(lh, 0) != LocalHeaderSig)
            throw Corrupt(file, $"there is no local header for entry '{name}' at offset {localOffset}");
        ushort lflags = U16(lh, 6), lmethod = U16(lh, 8);
        uint lcrc = U32(lh, 14);
        long lcsize = U32(lh, 18), lusize = U32(lh, 22);
        int lnameLen = U16(lh, 26), lextraLen = U16(lh, 28);
        if (lmethod != method || (lflags & 0x0001) != 0)
            throw Corrupt(file, $"entry '{name}' has a local header that disagrees with the central directory about method or encryption");
        long dataOffset = localOffset + LocalHeaderSize + lnameLen + lextraLen;
        if (dataOffset > limit)
            throw Corrupt(file, $"entry '{name}' has a local header that runs into the next entry or the central directory");
        var lname = ReadAt(stream, localOffset + LocalHeaderSize, lnameLen, file, $"local header of '{name}'");
        if (!lname.AsSpan().SequenceEqual(nameBytes))
            throw Corrupt(file, $"entry '{name}' has a different name in its local header than in the central directory");
        CheckLocalExtra(ReadAt(stream, localOffset + LocalHeaderSize + lnameLen, lextraLen, file, $"local header of '{name}'"), name, file);
        bool descriptor = (lflags & 0x0008) != 0;
        if (!descriptor)
        {
            if (lcrc != crc || (lcsize != 0xFFFFFFFF && lcsize != csize) || (lusize != 0xFFFFFFFF && lusize != csize))
                throw Corrupt(file, $"entry '{name}' declares a different CRC or size in its local header than in the central directory");
        }
        if (csize > limit - dataOffset)
            throw Corrupt(file, $"entry '{name}' declares {csize} bytes, more than remain before the next entry or the central directory");
        long dataEnd = dataOffset + csize;
        long spanEnd = dataEnd;
        if (descriptor) spanEnd = CheckDescriptor(stream, dataEnd, limit, crc, csize, sizes64, name, file);
        return new ZipEntry(name, crc, csize, localOffset, dataOffset, spanEnd);
    }

    // A data descriptor (signature optional) repeats CRC and sizes after the data; it must agree with the directory.
    private static long CheckDescriptor(Stream stream, long at, long limit, uint crc, long size, bool sizes64, string name, string file)
    {
        int available = (int)Math.Min(24, limit - at);
        var d = ReadAt(stream, at, available, file, $"data descriptor of '{name}'");
        int p = d.Length >= 4 && U32(d, 0) == DescriptorSig ? 4 : 0;
        bool Matches(int width)
        {
            if (d.Length - p < 4 + 2 * width || U32(d, p) != crc) return false;
            ulong c = width == 4 ? U32(d, p + 4) : U64(d, p + 4);
            ulong u = width == 4 ? U32(d, p + 4 + width) : U64(d, p + 4 + width);
            return c == (ulong)size && u == (ulong)size;
        }
        if (!sizes64 && Matches(4)) return at + p + 12;
        if (Matches(8)) return at + p + 20;
        throw Corrupt(file, $"entry '{name}' has a data descriptor that is missing or disagrees with the central directory");
    }

    // Walks the whole extra area (it must tile exactly) and returns the zip64 block, or an empty span.
    private static ReadOnlySpan<byte> FindZip64Extra(ReadOnlySpan<byte> extra, string name, string file)
    {
        int p = 0;
        ReadOnlySpan<byte> found = default;
        bool seen = false;
        while (p < extra.Length)
        {
            if (extra.Length - p < 4) throw Corrupt(file, $"entry '{name}' has a truncated extra field");
            ushort id = BinaryPrimitives.ReadUInt16LittleEndian(extra[p..]);
            int len = BinaryPrimitives.ReadUInt16LittleEndian(extra[(p + 2)..]);
            if (extra.Length - p - 4 < len) throw Corrupt(file, $"entry '{name}' has an extra field that runs past its end");
            if (id == 0x0001)
            {
                if (seen) throw Corrupt(file, $"entry '{name}' has two zip64 extra fields");
                found = extra.Slice(p + 4, len);
                seen = true;
            }
            p += 4 + len;
        }
        return found;
    }

    // The local extra area must tile exactly; torch's alignment field "FB" is padding made of 'Z' bytes, so any other
    // byte there means the file was altered after torch wrote it (zip has no checksum over headers to catch this).
    private static void CheckLocalExtra(ReadOnlySpan<byte> extra, string name, string file)
    {
        int p = 0;
        while (p < extra.Length)
        {
            if (extra.Length - p < 4) throw Corrupt(file, $"entry '{name}' has a truncated extra field in its local header");
            ushort id = BinaryPrimitives.ReadUInt16LittleEndian(extra[p..]);
            int len = BinaryPrimitives.ReadUInt16LittleEndian(extra[(p + 2)..]);
            if (extra.Length - p - 4 < len) throw Corrupt(file, $"entry '{name}' has a local extra field that runs past its end");
            if (id == TorchPaddingId)
            {
                int bad = extra.Slice(p + 4, len).IndexOfAnyExcept((byte)'Z');
                if (bad >= 0)
                    throw Corrupt(file, $"entry '{name}' has byte 0x{extra[p + 4 + bad]:x2} in torch's alignment padding, which is always 'Z', so the file was altered");
            }
            p += 4 + len;
        }
    }

    private static long NextZip64(ReadOnlySpan<byte> data, ref int p, string name, string file)
    {
        if (data.Length - p < 8) throw Corrupt(file, $"entry '{name}' has saturated 32-bit fields but no zip64 extra field long enough to hold their values");
        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(data[p..]);
        p += 8;
        if (v > long.MaxValue) throw Corrupt(file, $"entry '{name}' declares a zip64 size or offset beyond 2^63");
        return (long)v;
    }

    private static string DecodeName(ReadOnlySpan<byte> bytes, ushort flags, string file)
    {
        bool utf8 = (flags & 0x0800) != 0;
        foreach (var b in bytes)
            if (b >= 0x80 && !utf8)
                throw Fail(TorchCheckpointReason.UnsafeEntryName, file, "an entry name holds non-ASCII bytes without the UTF-8 flag, which torch never writes");
        try
        {
            return new UTF8Encoding(false, true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw Fail(TorchCheckpointReason.UnsafeEntryName, file, "an entry name is not valid UTF-8");
        }
    }

    // Names are never used as paths here, but a checkpoint that carries a path-climbing name is hostile by construction.
    private static void CheckName(string name, string file)
    {
        string shown = Shown(name);
        if (name.Length == 0)
            throw Fail(TorchCheckpointReason.UnsafeEntryName, file, "an entry has an empty name");
        foreach (char c in name)
            if (char.IsControl(c) || c == '\\' || c == ':')
                throw Fail(TorchCheckpointReason.UnsafeEntryName, file, $"entry name '{shown}' holds a control character, backslash or colon, which no torch checkpoint uses");
        if (name[0] == '/')
            throw Fail(TorchCheckpointReason.UnsafeEntryName, file, $"entry name '{shown}' is an absolute path");
        foreach (var part in name.Split('/'))
            if (part is ".." or ".")
                throw Fail(TorchCheckpointReason.UnsafeEntryName, file, $"entry name '{shown}' contains a '{part}' path segment (zip path traversal)");
        if (name.Contains("//", StringComparison.Ordinal))
            throw Fail(TorchCheckpointReason.UnsafeEntryName, file, $"entry name '{shown}' contains an empty path segment");
    }

    internal static string Shown(string text) => text.Length <= 120 ? text : text[..120] + "…";

    internal static byte[] ReadAt(Stream stream, long offset, int count, string file, string what)
    {
        if (offset < 0 || count < 0 || offset > stream.Length - count)
            throw Corrupt(file, $"the {what} (offset {offset}, {count} bytes) lies outside the {stream.Length}-byte file");
        var buffer = new byte[count];
        stream.Seek(offset, SeekOrigin.Begin);
        stream.ReadExactly(buffer);
        return buffer;
    }

    private static uint ReadU32At(Stream stream, long offset, string file) => U32(ReadAt(stream, offset, 4, file, "zip64 locator"), 0);

    private static ushort U16(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt16LittleEndian(b[at..]);
    private static uint U32(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt32LittleEndian(b[at..]);
    private static ulong U64(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt64LittleEndian(b[at..]);

    private static TorchCheckpointException Corrupt(string file, string text) => Fail(TorchCheckpointReason.ZipCorrupt, file, text);

    internal static TorchCheckpointException Fail(TorchCheckpointReason reason, string file, string text) => new(reason, $"{file}: {text}.");
}
