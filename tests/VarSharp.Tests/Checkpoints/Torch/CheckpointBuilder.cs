using System.Buffers.Binary;
using System.Text;
using VarSharp.Checkpoints.Torch;

namespace VarSharp.Tests.Checkpoints.Torch;

/// <summary>Writes protocol-2 pickles opcode by opcode, so tests can build exactly the pickle they need.</summary>
internal sealed class PickleBuilder
{
    private readonly MemoryStream _s = new();

    public PickleBuilder() => Op(0x80).Byte(2);

    public PickleBuilder Op(int op) => Byte((byte)op);

    public PickleBuilder Byte(byte b)
    {
        _s.WriteByte(b);
        return this;
    }

    public PickleBuilder Global(string module, string name) => Op('c').Raw(Encoding.ASCII.GetBytes($"{module}\n{name}\n"));

    public PickleBuilder Str(string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        Op('X');
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(len, b.Length);
        return Raw(len.ToArray()).Raw(b);
    }

    public PickleBuilder Int(long v)
    {
        if (v is >= 0 and < 256) return Op('K').Byte((byte)v);
        if (v is >= int.MinValue and <= int.MaxValue)
        {
            var b = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(b, (int)v);
            return Op('J').Raw(b);
        }
        var l = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(l, v);
        return Op(0x8a).Byte(8).Raw(l);
    }

    public PickleBuilder Tuple(params long[] items)
    {
        Op('(');
        foreach (var i in items) Int(i);
        return Op('t');
    }

    public PickleBuilder Raw(byte[] bytes)
    {
        _s.Write(bytes);
        return this;
    }

    /// <summary>collections.OrderedDict() on the stack.</summary>
    public PickleBuilder OrderedDict() => Global("collections", "OrderedDict").Op(')').Op('R');

    /// <summary>A `_rebuild_tensor_v2` call for ('storage', FloatStorage, key, 'cpu', numel) with the given view.</summary>
    public PickleBuilder Tensor(string key, long numel, long offset, long[] size, long[] stride, string storage = "FloatStorage")
    {
        Global("torch._utils", "_rebuild_tensor_v2").Op('(');
        Op('(').Str("storage").Global("torch", storage).Str(key).Str("cpu").Int(numel).Op('t').Op('Q');
        Int(offset).Tuple(size).Tuple(stride).Op(0x89).OrderedDict();
        return Op('t').Op('R');
    }

    /// <summary>An OrderedDict state dict of the given entries (each entry pushes its value), then STOP.</summary>
    public static byte[] StateDict(params (string Key, Action<PickleBuilder> Value)[] entries)
    {
        var p = new PickleBuilder().OrderedDict().Op('(');
        foreach (var (key, value) in entries)
        {
            p.Str(key);
            value(p);
        }
        return p.Op('u').Op('.').ToArray();
    }

    public byte[] ToArray() => _s.ToArray();
}

/// <summary>Writes zip checkpoints the way torch does (stored records, "FB" padding, data descriptors, zip64 end records), with knobs to break them.</summary>
internal sealed class TorchZipBuilder
{
    private readonly List<(string Name, byte[] Data)> _entries = [];

    /// <summary>Writes every offset and size as 0xFFFFFFFF with the real values in zip64 extra fields (what files over 4 GB need).</summary>
    public bool Zip64Everywhere { get; init; }

    public TorchZipBuilder Add(string name, byte[] data)
    {
        _entries.Add((name, data));
        return this;
    }

    public static byte[] Floats(params float[] values)
    {
        var b = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(4 * i), values[i]);
        return b;
    }

    /// <summary>A checkpoint `archive/` with data.pkl, version and the given storages.</summary>
    public static TorchZipBuilder Checkpoint(byte[] pickle, params (string Key, byte[] Data)[] storages)
    {
        var z = new TorchZipBuilder().Add("archive/data.pkl", pickle);
        foreach (var (key, data) in storages) z.Add($"archive/data/{key}", data);
        return z.Add("archive/version", "3\n"u8.ToArray());
    }

    public byte[] Build()
    {
        var file = new MemoryStream();
        var central = new MemoryStream();
        foreach (var (name, data) in _entries)
        {
            long offset = file.Position;
            var nameBytes = Encoding.UTF8.GetBytes(name);
            uint crc = Crc32.Compute(data);
            // Local header with data descriptor flag, zero CRC/sizes, and "FB" padding to a 64-byte data boundary.
            int pad = (int)((64 - (offset + 30 + nameBytes.Length + 4) % 64) % 64);
            var local = new MemoryStream();
            Write32(local, 0x04034b50); Write16(local, 45); Write16(local, 0x0808); Write16(local, 0); Write32(local, 0);
            Write32(local, 0); Write32(local, 0); Write32(local, 0);
            Write16(local, nameBytes.Length); Write16(local, 4 + pad);
            local.Write(nameBytes);
            Write16(local, 0x4246); Write16(local, pad);
            local.Write(Enumerable.Repeat((byte)'Z', pad).ToArray());
            file.Write(local.ToArray());
            file.Write(data);
            Write32(file, 0x08074b50); Write32(file, crc);
            if (Zip64Everywhere) { Write64(file, data.Length); Write64(file, data.Length); }
            else { Write32(file, (uint)data.Length); Write32(file, (uint)data.Length); }

            var extra = new MemoryStream();
            if (Zip64Everywhere) { Write16(extra, 1); Write16(extra, 24); Write64(extra, data.Length); Write64(extra, data.Length); Write64(extra, offset); }
            Write32(central, 0x02014b50); Write16(central, 45); Write16(central, 45); Write16(central, 0x0808); Write16(central, 0);
            Write32(central, 0); Write32(central, crc);
            Write32(central, Zip64Everywhere ? 0xFFFFFFFF : (uint)data.Length);
            Write32(central, Zip64Everywhere ? 0xFFFFFFFF : (uint)data.Length);
            Write16(central, nameBytes.Length); Write16(central, (int)extra.Length); Write16(central, 0); Write16(central, 0);
            Write16(central, 0); Write32(central, 0);
            Write32(central, Zip64Everywhere ? 0xFFFFFFFF : (uint)offset);
            central.Write(nameBytes);
            central.Write(extra.ToArray());
        }
        long cdOffset = file.Position;
        file.Write(central.ToArray());
        long z64 = file.Position;
        Write32(file, 0x06064b50); Write64(file, 44); Write16(file, 45); Write16(file, 45); Write32(file, 0); Write32(file, 0);
        Write64(file, _entries.Count); Write64(file, _entries.Count); Write64(file, central.Length); Write64(file, cdOffset);
        Write32(file, 0x07064b50); Write32(file, 0); Write64(file, z64); Write32(file, 1);
        Write32(file, 0x06054b50); Write16(file, 0); Write16(file, 0);
        Write16(file, Zip64Everywhere ? 0xFFFF : _entries.Count); Write16(file, Zip64Everywhere ? 0xFFFF : _entries.Count);
        Write32(file, Zip64Everywhere ? 0xFFFFFFFF : (uint)central.Length); Write32(file, Zip64Everywhere ? 0xFFFFFFFF : (uint)cdOffset);
        Write16(file, 0);
        return file.ToArray();
    }

    private static void Write16(Stream s, int v) { Span<byte> b = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)v); s.Write(b); }
    private static void Write32(Stream s, uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); s.Write(b); }
    private static void Write64(Stream s, long v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteInt64LittleEndian(b, v); s.Write(b); }
}
