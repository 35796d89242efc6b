using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints.Torch;

/// <summary>
/// Writes a state_dict the way torch.save does (PyTorch's zip format, pickle protocol 2), so that <c>torch.load(f,
/// weights_only=True)</c> reads it and <c>module.load_state_dict</c> takes it: an <c>OrderedDict</c> of name → tensor,
/// each rebuilt by <c>torch._utils._rebuild_tensor_v2</c> from its own storage record <c>archive/data/N</c>
/// (contiguous, little-endian, 64-byte aligned as torch aligns them), plus <c>archive/version</c> and
/// <c>archive/byteorder</c>. The pickle uses only what the restricted unpickler of <see cref="TorchCheckpoint"/> allows,
/// so our own reader reads every file this writes. Files past 4 GiB get zip64 records. Written atomically.
/// </summary>
public static class TorchCheckpointWriter
{
    private const string Archive = "archive";
    private const int Alignment = 64;

    /// <summary>Writes <paramref name="tensors"/> (in this order) to <paramref name="path"/>; returns the bytes written.</summary>
    public static long Write(string path, IReadOnlyList<KeyValuePair<string, Tensor>> tensors) => Write(path, tensors, forceZip64: false);

    internal static long Write(string path, IReadOnlyList<KeyValuePair<string, Tensor>> tensors, bool forceZip64)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, _) in tensors)
            if (!names.Add(name)) throw new VarSharpException($"The state dict to export names '{name}' twice.");
        var storages = tensors.Select(kv => (kv.Key, Type: StorageName(kv.Key, kv.Value.dtype), kv.Value)).ToList();
        long written = 0;
        AtomicFile.Write(path, stream =>
        {
            var zip = new ZipWriter(stream, forceZip64);
            zip.Add($"{Archive}/data.pkl", Pickle(storages));
            zip.Add($"{Archive}/byteorder", "little"u8.ToArray());
            for (int i = 0; i < storages.Count; i++)
            {
                using var detached = storages[i].Value.detach();
                using var onCpu = detached.cpu();
                using var data = onCpu.contiguous();
                zip.Add($"{Archive}/data/{i.ToString(CultureInfo.InvariantCulture)}", data.numel() * data.element_size(),
                    target => TensorBytes.WriteFrom(data, target));
            }
            zip.Add($"{Archive}/version", "3\n"u8.ToArray());
            zip.Finish();
            written = stream.Position;
        });
        return written;
    }

    // The reader's own table, turned around, so that what we write is exactly what we accept.
    private static readonly Dictionary<ScalarType, string> StorageNames =
        RestrictedUnpickler.StorageTypes.Values.ToDictionary(t => t.ScalarType, t => t.StorageName);

    private static string StorageName(string name, ScalarType dtype) =>
        StorageNames.TryGetValue(dtype, out var storage) ? storage
            : throw new VarSharpException($"Tensor '{name}' has dtype {dtype}, which a PyTorch checkpoint cannot hold here.");

    /// <summary>
    /// OrderedDict() REDUCE, then MARK, (key, _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict()))…,
    /// SETITEMS, STOP — the shape of torch.save's own pickle without its memo and its _metadata.
    /// </summary>
    private static byte[] Pickle(List<(string Key, string Type, Tensor Value)> storages)
    {
        var p = new PickleBuilder();
        p.Proto(2);
        p.Global("collections", "OrderedDict");
        p.Op(')'); // EMPTY_TUPLE
        p.Op('R'); // REDUCE
        p.Op('(');  // MARK
        for (int i = 0; i < storages.Count; i++)
        {
            var (key, type, t) = storages[i];
            p.Unicode(key);
            p.Global("torch._utils", "_rebuild_tensor_v2");
            p.Op('(');
            // Persistent id ('storage', torch.XStorage, 'i', 'cpu', numel).
            p.Op('(');
            p.Unicode("storage");
            p.Global("torch", type);
            p.Unicode(i.ToString(CultureInfo.InvariantCulture));
            p.Unicode("cpu");
            p.Int(t.numel());
            p.Op('t'); // TUPLE
            p.Op('Q'); // BINPERSID
            p.Int(0);  // storage offset
            p.Tuple(t.shape);
            p.Tuple(ContiguousStrides(t.shape));
            p.Op(0x89); // NEWFALSE: requires_grad
            p.Global("collections", "OrderedDict");
            p.Op(')');
            p.Op('R'); // backward hooks: OrderedDict()
            p.Op('t');
            p.Op('R');
        }
        p.Op('u'); // SETITEMS
        p.Op('.'); // STOP
        return p.ToArray();
    }

    private static long[] ContiguousStrides(long[] shape)
    {
        var strides = new long[shape.Length];
        long s = 1;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            strides[d] = s;
            s *= shape[d];
        }
        return strides;
    }

    private sealed class PickleBuilder
    {
        private readonly MemoryStream _out = new();

        public void Op(int code) => _out.WriteByte((byte)code);

        public void Proto(byte version)
        {
            Op(0x80);
            Op(version);
        }

        public void Global(string module, string name)
        {
            Op('c');
            _out.Write(Encoding.ASCII.GetBytes($"{module}\n{name}\n"));
        }

        public void Unicode(string text)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            Op('X');
            Span<byte> len = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(len, (uint)bytes.Length);
            _out.Write(len);
            _out.Write(bytes);
        }

        /// <summary>BININT1/BININT2/BININT where they fit (as pickle itself chooses), LONG1 beyond 32 bits.</summary>
        public void Int(long v)
        {
            if (v is >= 0 and <= byte.MaxValue)
            {
                Op('K');
                Op((byte)v);
            }
            else if (v is >= 0 and <= ushort.MaxValue)
            {
                Op('M');
                Span<byte> b = stackalloc byte[2];
                BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)v);
                _out.Write(b);
            }
            else if (v is >= int.MinValue and <= int.MaxValue)
            {
                Op('J');
                Span<byte> b = stackalloc byte[4];
                BinaryPrimitives.WriteInt32LittleEndian(b, (int)v);
                _out.Write(b);
            }
            else
            {
                // LONG1: little-endian two's complement, 8 bytes always suffice for a long.
                Op(0x8a);
                Op(8);
                Span<byte> b = stackalloc byte[8];
                BinaryPrimitives.WriteInt64LittleEndian(b, v);
                _out.Write(b);
            }
        }

        public void Tuple(long[] values)
        {
            Op('(');
            foreach (var v in values) Int(v);
            Op('t');
        }

        public byte[] ToArray() => _out.ToArray();
    }

    /// <summary>Passes writes through to a stream, counting them and computing their CRC-32.</summary>
    private sealed class CrcStream(Stream inner) : Stream
    {
        private Crc32 _crc = new();

        public long Written { get; private set; }
        public uint Crc => _crc.Value;

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _crc.Append(buffer);
            inner.Write(buffer);
            Written += buffer.Length;
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => Written;
        public override long Position { get => Written; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    /// <summary>
    /// Stored (uncompressed) entries with torch's "FB" padding field so each record's data starts on a 64-byte
    /// boundary; zip64 sizes and offsets when a value does not fit in 32 bits (or always, for tests).
    /// </summary>
    private sealed class ZipWriter(FileStream stream, bool forceZip64)
    {
        private const ushort TorchPaddingId = 0x4246; // "FB"
        private const ushort Zip64Id = 0x0001;
        private readonly List<(byte[] Name, uint Crc, long Size, long Offset)> _entries = [];

        public void Add(string name, byte[] data) => Add(name, data.Length, target => target.Write(data));

        /// <summary>
        /// One stored record of <paramref name="length"/> bytes that <paramref name="writeData"/> writes; its CRC is
        /// computed on the way and patched into the local header afterwards, so no record is ever held whole in memory.
        /// </summary>
        public void Add(string name, long length, Action<Stream> writeData)
        {
            var nameBytes = Encoding.UTF8.GetBytes(name);
            long offset = stream.Position;
            bool zip64 = forceZip64 || length >= uint.MaxValue;
            // The local header has no offset field, but its "version needed" should agree with the central one's.
            bool zip64Version = zip64 || offset >= uint.MaxValue;
            int zip64Extra = zip64 ? 4 + 16 : 0;
            long dataStart = offset + 30 + nameBytes.Length + zip64Extra + 4;
            int pad = (int)((Alignment - dataStart % Alignment) % Alignment);

            var header = new byte[30 + nameBytes.Length + zip64Extra + 4 + pad];
            var h = header.AsSpan();
            BinaryPrimitives.WriteUInt32LittleEndian(h, 0x04034b50);
            BinaryPrimitives.WriteUInt16LittleEndian(h[4..], zip64Version ? (ushort)45 : (ushort)20);
            // flags, method (stored), time and date stay 0.
            uint size32 = zip64 ? uint.MaxValue : (uint)length;
            BinaryPrimitives.WriteUInt32LittleEndian(h[18..], size32);
            BinaryPrimitives.WriteUInt32LittleEndian(h[22..], size32);
            BinaryPrimitives.WriteUInt16LittleEndian(h[26..], (ushort)nameBytes.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(h[28..], (ushort)(zip64Extra + 4 + pad));
            nameBytes.CopyTo(h[30..]);
            var extra = h[(30 + nameBytes.Length)..];
            if (zip64)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(extra, Zip64Id);
                BinaryPrimitives.WriteUInt16LittleEndian(extra[2..], 16);
                BinaryPrimitives.WriteInt64LittleEndian(extra[4..], length);
                BinaryPrimitives.WriteInt64LittleEndian(extra[12..], length);
                extra = extra[zip64Extra..];
            }
            BinaryPrimitives.WriteUInt16LittleEndian(extra, TorchPaddingId);
            BinaryPrimitives.WriteUInt16LittleEndian(extra[2..], (ushort)pad);
            extra[4..].Fill((byte)'Z');
            stream.Write(header);
            var crcStream = new CrcStream(stream);
            writeData(crcStream);
            if (crcStream.Written != length)
                throw new InvalidOperationException($"record {name}: {crcStream.Written} bytes written, {length} declared");
            uint crc = crcStream.Crc;
            long end = stream.Position;
            stream.Position = offset + 14;
            Span<byte> crcBytes = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(crcBytes, crc);
            stream.Write(crcBytes);
            stream.Position = end;
            _entries.Add((nameBytes, crc, length, offset));
        }

        public void Finish()
        {
            long cdStart = stream.Position;
            foreach (var (name, crc, size, offset) in _entries)
            {
                bool zip64 = forceZip64 || size >= uint.MaxValue || offset >= uint.MaxValue;
                int extraLen = zip64 ? 4 + 24 : 0;
                var c = new byte[46 + name.Length + extraLen];
                var s = c.AsSpan();
                BinaryPrimitives.WriteUInt32LittleEndian(s, 0x02014b50);
                BinaryPrimitives.WriteUInt16LittleEndian(s[4..], zip64 ? (ushort)45 : (ushort)20);
                BinaryPrimitives.WriteUInt16LittleEndian(s[6..], zip64 ? (ushort)45 : (ushort)20);
                BinaryPrimitives.WriteUInt32LittleEndian(s[16..], crc);
                BinaryPrimitives.WriteUInt32LittleEndian(s[20..], zip64 ? uint.MaxValue : (uint)size);
                BinaryPrimitives.WriteUInt32LittleEndian(s[24..], zip64 ? uint.MaxValue : (uint)size);
                BinaryPrimitives.WriteUInt16LittleEndian(s[28..], (ushort)name.Length);
                BinaryPrimitives.WriteUInt16LittleEndian(s[30..], (ushort)extraLen);
                BinaryPrimitives.WriteUInt32LittleEndian(s[42..], zip64 ? uint.MaxValue : (uint)offset);
                name.CopyTo(s[46..]);
                if (zip64)
                {
                    var e = s[(46 + name.Length)..];
                    BinaryPrimitives.WriteUInt16LittleEndian(e, Zip64Id);
                    BinaryPrimitives.WriteUInt16LittleEndian(e[2..], 24);
                    BinaryPrimitives.WriteInt64LittleEndian(e[4..], size);
                    BinaryPrimitives.WriteInt64LittleEndian(e[12..], size);
                    BinaryPrimitives.WriteInt64LittleEndian(e[20..], offset);
                }
                stream.Write(c);
            }
            long cdEnd = stream.Position, cdSize = cdEnd - cdStart;
            bool zip64End = forceZip64 || cdStart >= uint.MaxValue || _entries.Count >= ushort.MaxValue;
            if (zip64End)
            {
                var z = new byte[56 + 20];
                var s = z.AsSpan();
                BinaryPrimitives.WriteUInt32LittleEndian(s, 0x06064b50);
                BinaryPrimitives.WriteInt64LittleEndian(s[4..], 56 - 12);
                BinaryPrimitives.WriteUInt16LittleEndian(s[12..], 45);
                BinaryPrimitives.WriteUInt16LittleEndian(s[14..], 45);
                BinaryPrimitives.WriteInt64LittleEndian(s[24..], _entries.Count);
                BinaryPrimitives.WriteInt64LittleEndian(s[32..], _entries.Count);
                BinaryPrimitives.WriteInt64LittleEndian(s[40..], cdSize);
                BinaryPrimitives.WriteInt64LittleEndian(s[48..], cdStart);
                var loc = s[56..];
                BinaryPrimitives.WriteUInt32LittleEndian(loc, 0x07064b50);
                BinaryPrimitives.WriteInt64LittleEndian(loc[8..], cdEnd);
                BinaryPrimitives.WriteUInt32LittleEndian(loc[16..], 1);
                stream.Write(z);
            }
            var end = new byte[22];
            var en = end.AsSpan();
            BinaryPrimitives.WriteUInt32LittleEndian(en, 0x06054b50);
            ushort count16 = zip64End ? ushort.MaxValue : (ushort)_entries.Count;
            BinaryPrimitives.WriteUInt16LittleEndian(en[8..], count16);
            BinaryPrimitives.WriteUInt16LittleEndian(en[10..], count16);
            BinaryPrimitives.WriteUInt32LittleEndian(en[12..], zip64End ? uint.MaxValue : (uint)cdSize);
            BinaryPrimitives.WriteUInt32LittleEndian(en[16..], zip64End ? uint.MaxValue : (uint)cdStart);
            stream.Write(end);
        }
    }
}
