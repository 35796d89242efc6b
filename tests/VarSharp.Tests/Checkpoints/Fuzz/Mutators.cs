using System.Buffers.Binary;
using System.Text;

namespace VarSharp.Tests.Checkpoints.Fuzz;

/// <summary>Mutations for zip checkpoints, legacy pickle streams and safetensors files.</summary>
internal static class Mutators
{
    // ---- generic ------------------------------------------------------------------------------------------------

    public static byte[] FlipBit(Random rng, byte[] b, int start, int end)
    {
        var m = (byte[])b.Clone();
        if (end <= start) return m;
        m[rng.Next(start, end)] ^= (byte)(1 << rng.Next(8));
        return m;
    }

    public static byte[] SetByte(Random rng, byte[] b, int start, int end, byte? value = null)
    {
        var m = (byte[])b.Clone();
        if (end <= start) return m;
        m[rng.Next(start, end)] = value ?? Interesting(rng);
        return m;
    }

    public static byte[] Truncate(Random rng, byte[] b) => b[..rng.Next(b.Length)];

    public static byte[] Insert(Random rng, byte[] b)
    {
        int at = rng.Next(b.Length + 1);
        var extra = new byte[rng.Next(1, 9)];
        rng.NextBytes(extra);
        return [.. b.AsSpan(0, at), .. extra, .. b.AsSpan(at)];
    }

    public static byte[] Delete(Random rng, byte[] b)
    {
        if (b.Length == 0) return b;
        int at = rng.Next(b.Length);
        int n = Math.Min(rng.Next(1, 9), b.Length - at);
        return [.. b.AsSpan(0, at), .. b.AsSpan(at + n)];
    }

    /// <summary>Values that tend to break size arithmetic: 0, 1, 0x7F, 0x80, 0xFF and random.</summary>
    private static byte Interesting(Random rng) => rng.Next(6) switch
    {
        0 => 0,
        1 => 1,
        2 => 0x7F,
        3 => 0x80,
        4 => 0xFF,
        _ => (byte)rng.Next(256),
    };

    private static void WriteField(Random rng, byte[] m, int at, int width)
    {
        if (at < 0 || at + width > m.Length) return;
        ulong current = 0;
        for (int i = width - 1; i >= 0; i--) current = current << 8 | m[at + i];
        ulong value = rng.Next(7) switch
        {
            0 => 0,
            1 => ulong.MaxValue,
            2 => current + 1,
            3 => current - 1,
            4 => 0x7FFFFFFF,
            5 => (ulong)m.Length,
            _ => (ulong)rng.NextInt64(),
        };
        for (int i = 0; i < width; i++) m[at + i] = (byte)(value >> (8 * i));
    }

    // ---- zip checkpoints ----------------------------------------------------------------------------------------

    private static readonly byte[] Opcodes = "(.0123FIJKLMNPQRSTUVXabcd}eghijl]opqrst)uGBC"u8.ToArray()
        .Concat(Enumerable.Range(0x80, 0x19).Select(i => (byte)i)).ToArray();

    private static readonly (string From, string To)[] NameSwaps =
    [
        ("FloatStorage", "ShortStorage"), ("FloatStorage", "FloatStorag2"), ("LongStorage", "HalfStorage"),
        ("LongStorage", "ByteStorage"), ("LongStorage", "BoolStorage"), ("_rebuild_tensor_v2", "_rebuild_tensor_v3"),
        ("_rebuild_tensor_v2", "_rebuild_parameter"), ("OrderedDict", "OrderedDicu"), ("collections", "collectionz"),
        ("storage", "storagf"), ("cpu", "cud"), ("torch._utils", "torch.utils_"),
    ];

    public static IReadOnlyList<Mutator> ForZip(byte[] original)
    {
        var z = new ZipLayout(original);
        var pickle = z.Pickle;
        var records = z.Records.ToList();
        int len = original.Length;

        byte[] InPickle(byte[] b, Random rng, Action<byte[], int, int> edit)
        {
            var m = (byte[])b.Clone();
            edit(m, pickle.DataOffset, pickle.Size);
            if (b.Length == original.Length) ZipLayout.FixCrc(m, pickle);
            return m;
        }

        return
        [
            new("bitflip", 4, (r, b) => FlipBit(r, b, 0, b.Length)),
            new("bitflip-directory", 4, (r, b) => FlipBit(r, b, Math.Min(z.CentralStart, b.Length), b.Length)),
            new("bitflip-pickle", 3, (r, b) => FlipBit(r, b, pickle.DataOffset, Math.Min(b.Length, pickle.DataOffset + pickle.Size))),
            new("truncate", 3, (r, b) => Truncate(r, b)),
            new("insert", 1, (r, b) => Insert(r, b)),
            new("delete", 1, (r, b) => Delete(r, b)),
            new("pickle-byte+crc", 6, (r, b) => b.Length != len ? b : InPickle(b, r, (m, at, n) => m[at + r.Next(n)] = Interesting(r))),
            new("pickle-opcode+crc", 6, (r, b) => b.Length != len ? b : InPickle(b, r, (m, at, n) => m[at + r.Next(n)] = Opcodes[r.Next(Opcodes.Length)])),
            new("pickle-window+crc", 3, (r, b) => b.Length != len ? b : InPickle(b, r, (m, at, n) =>
            {
                int w = r.Next(2, 17), s = at + r.Next(Math.Max(1, n - w));
                for (int i = s; i < Math.Min(at + n, s + w); i++) m[i] = (byte)r.Next(256);
            })),
            new("pickle-int+crc", 6, (r, b) => b.Length != len ? b : InPickle(b, r, (m, at, n) =>
            {
                // BININT1 'K', BININT2 'M' and BININT 'J' arguments: sizes, strides, offsets, numels.
                var spots = Enumerable.Range(at, n - 1).Where(i => m[i] is (byte)'K' or (byte)'M' or (byte)'J').ToList();
                if (spots.Count == 0) return;
                int p = spots[r.Next(spots.Count)];
                int width = m[p] == 'K' ? 1 : m[p] == 'M' ? 2 : 4;
                for (int i = 1; i <= width && p + i < at + n; i++) m[p + i] = Interesting(r);
            })),
            new("pickle-name+crc", 4, (r, b) => b.Length != len ? b : InPickle(b, r, (m, at, n) =>
            {
                var (from, to) = NameSwaps[r.Next(NameSwaps.Length)];
                var text = Encoding.Latin1.GetString(m, at, n);
                var hits = new List<int>();
                for (int i = text.IndexOf(from, StringComparison.Ordinal); i >= 0; i = text.IndexOf(from, i + 1, StringComparison.Ordinal)) hits.Add(i);
                if (hits.Count == 0) return;
                Encoding.Latin1.GetBytes(to).CopyTo(m, at + hits[r.Next(hits.Count)]);
            })),
            new("record-byte+crc", 2, (r, b) =>
            {
                if (b.Length != len || records.Count == 0) return b;
                var e = records[r.Next(records.Count)];
                var m = (byte[])b.Clone();
                m[e.DataOffset + r.Next(e.Size)] ^= (byte)(1 << r.Next(8));
                ZipLayout.FixCrc(m, e);
                return m;
            }),
            new("central-field", 5, (r, b) =>
            {
                if (b.Length != len) return b;
                var e = z.Entries[r.Next(z.Entries.Count)];
                var m = (byte[])b.Clone();
                var (offset, width) = new[] { (6, 2), (8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (32, 2), (34, 2), (42, 4) }[r.Next(11)];
                WriteField(r, m, e.CentralOffset + offset, width);
                return m;
            }),
            new("central-name", 3, (r, b) =>
            {
                if (b.Length != len) return b;
                var e = z.Entries[r.Next(z.Entries.Count)];
                var m = (byte[])b.Clone();
                int nameLen = BinaryPrimitives.ReadUInt16LittleEndian(m.AsSpan(e.CentralOffset + 28));
                int at = r.Next(nameLen);
                byte c = "/.\\:\0.9Z"u8[r.Next(8)];
                m[e.CentralOffset + 46 + at] = c;
                if (r.Next(2) == 0) m[e.LocalOffset + 30 + at] = c; // keep the local header in step half the time
                return m;
            }),
            new("local-field", 3, (r, b) =>
            {
                if (b.Length != len) return b;
                var e = z.Entries[r.Next(z.Entries.Count)];
                var m = (byte[])b.Clone();
                var (offset, width) = new[] { (0, 4), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2) }[r.Next(8)];
                WriteField(r, m, e.LocalOffset + offset, width);
                return m;
            }),
            new("end-records", 3, (r, b) =>
            {
                if (b.Length != len) return b;
                var m = (byte[])b.Clone();
                // The classic end record, or the zip64 end record and locator just before it.
                if (r.Next(2) == 0)
                {
                    var (offset, width) = new[] { (4, 2), (6, 2), (8, 2), (10, 2), (12, 4), (16, 4), (20, 2) }[r.Next(7)];
                    WriteField(r, m, z.EndRecord + offset, width);
                }
                else
                {
                    int start = Math.Max(0, z.EndRecord - 76);
                    int at = r.Next(start, z.EndRecord);
                    WriteField(r, m, at, 1 + r.Next(8));
                }
                return m;
            }),
        ];
    }

    // ---- legacy streams -----------------------------------------------------------------------------------------

    public static IReadOnlyList<Mutator> ForLegacy(byte[] original, int pickleEnd) =>
    [
        new("bitflip", 3, (r, b) => FlipBit(r, b, 0, b.Length)),
        new("bitflip-pickles", 5, (r, b) => FlipBit(r, b, 0, Math.Min(b.Length, pickleEnd))),
        new("byte-pickles", 5, (r, b) => SetByte(r, b, 0, Math.Min(b.Length, pickleEnd))),
        new("opcode-pickles", 4, (r, b) => SetByte(r, b, 0, Math.Min(b.Length, pickleEnd), Opcodes[r.Next(Opcodes.Length)])),
        new("count-field", 3, (r, b) =>
        {
            var m = (byte[])b.Clone();
            if (m.Length > pickleEnd + 8) WriteField(r, m, pickleEnd, 8);
            return m;
        }),
        new("truncate", 2, (r, b) => Truncate(r, b)),
        new("insert", 1, (r, b) => Insert(r, b)),
        new("delete", 1, (r, b) => Delete(r, b)),
    ];

    // ---- safetensors --------------------------------------------------------------------------------------------

    private static readonly string[] DTypes = ["F32", "F16", "BF16", "F64", "I64", "I8", "U8", "BOOL", "C64", "F8", "XX"];

    public static IReadOnlyList<Mutator> ForSafeTensors(byte[] original)
    {
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(original);

        // Edits the JSON text and writes a length prefix that matches it, so the parser (not the prefix check) sees it.
        static byte[] EditHeader(byte[] b, Func<string, string> edit)
        {
            if (b.Length < 8) return b;
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(b);
            if (n > (ulong)(b.Length - 8)) return b;
            var json = Encoding.UTF8.GetString(b, 8, (int)n);
            var edited = Encoding.UTF8.GetBytes(edit(json));
            var prefix = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)edited.Length);
            return [.. prefix, .. edited, .. b.AsSpan(8 + (int)n)];
        }

        return
        [
            new("bitflip", 2, (r, b) => FlipBit(r, b, 0, b.Length)),
            new("bitflip-header", 6, (r, b) => FlipBit(r, b, 0, Math.Min(b.Length, headerEnd))),
            new("byte-header", 4, (r, b) => SetByte(r, b, 0, Math.Min(b.Length, headerEnd))),
            new("truncate", 2, (r, b) => Truncate(r, b)),
            new("insert", 1, (r, b) => Insert(r, b)),
            new("delete", 1, (r, b) => Delete(r, b)),
            new("length-prefix", 3, (r, b) =>
            {
                var m = (byte[])b.Clone();
                if (m.Length >= 8) WriteField(r, m, 0, 8);
                return m;
            }),
            new("json-digit", 6, (r, b) => EditHeader(b, json =>
            {
                var digits = Enumerable.Range(0, json.Length).Where(i => char.IsAsciiDigit(json[i])).ToList();
                if (digits.Count == 0) return json;
                int at = digits[r.Next(digits.Count)];
                string repl = r.Next(4) switch { 0 => "0", 1 => "9", 2 => "-1", _ => r.Next(10).ToString(System.Globalization.CultureInfo.InvariantCulture) };
                return json[..at] + repl + json[(at + 1)..];
            })),
            new("json-number", 4, (r, b) => EditHeader(b, json =>
            {
                var digits = Enumerable.Range(0, json.Length).Where(i => char.IsAsciiDigit(json[i]) && (i == 0 || !char.IsAsciiDigit(json[i - 1]))).ToList();
                if (digits.Count == 0) return json;
                int at = digits[r.Next(digits.Count)];
                int end = at;
                while (end < json.Length && char.IsAsciiDigit(json[end])) end++;
                string repl = new[] { "18446744073709551615", "9223372036854775807", "4294967296", "1e3", "0.5", "-0", "99999999999999999999999" }[r.Next(7)];
                return json[..at] + repl + json[end..];
            })),
            new("json-dtype", 3, (r, b) => EditHeader(b, json =>
            {
                int at = json.IndexOf("\"F32\"", StringComparison.Ordinal);
                if (at < 0) return json;
                for (int skip = r.Next(50); skip > 0; skip--)
                {
                    int next = json.IndexOf("\"F32\"", at + 1, StringComparison.Ordinal);
                    if (next < 0) break;
                    at = next;
                }
                return json[..(at + 1)] + DTypes[r.Next(DTypes.Length)] + json[(at + 4)..];
            })),
            new("json-many-dims", 1, (r, b) => EditHeader(b, json =>
            {
                // A shape with a huge number of unit dimensions keeps the byte size valid but not the rank.
                int at = json.IndexOf("\"shape\":[", StringComparison.Ordinal);
                if (at < 0) return json;
                at += "\"shape\":[".Length;
                int ones = new[] { 65, 1000, 100_000 }[r.Next(3)];
                return json[..at] + string.Concat(Enumerable.Repeat("1,", ones)) + json[at..];
            })),
            new("json-char", 4, (r, b) => EditHeader(b, json =>
            {
                int at = r.Next(json.Length + 1);
                string c = new[] { "{", "}", "[", "]", "\"", ",", ":", "", "\\", "null", "\u00e9" }[r.Next(11)];
                return r.Next(2) == 0 || at == json.Length ? json[..at] + c + json[at..] : json[..at] + c + json[(at + 1)..];
            })),
        ];
    }
}
