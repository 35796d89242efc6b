using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints.Torch;

/// <summary>A checkpoint whose container and pickle have been fully validated; no tensor memory is allocated yet.</summary>
internal sealed class ParsedCheckpoint
{
    public required List<(string Name, TensorRef Tensor)> Tensors { get; init; }

    /// <summary>Reads one storage's bytes into a fresh tensor (checking its CRC in a zip).</summary>
    public required Action<StorageRef, Tensor> ReadStorage { get; init; }

    public required long FileLength { get; init; }
}

/// <summary>Both on-disk layouts of torch.save, parsed with <see cref="RestrictedUnpickler"/>.</summary>
internal static class TorchCheckpointParser
{
    /// <summary>0x1950a86a20f9469cfc6c, the first pickle of a legacy torch.save stream.</summary>
    private static readonly BigInteger LegacyMagic = BigInteger.Parse("1950a86a20f9469cfc6c", System.Globalization.NumberStyles.HexNumber);

    private const long LegacyProtocol = 1001;

    public static ParsedCheckpoint Parse(Stream stream, string file)
    {
        long length = stream.Length;
        Span<byte> start = stackalloc byte[4];
        if (length < 4)
            throw Fail(TorchCheckpointReason.NotACheckpoint, file, $"the file has {length} bytes, too few for a PyTorch checkpoint");
        stream.Seek(0, SeekOrigin.Begin);
        stream.ReadExactly(start);
        if (ZipContainer.LooksLikeZip(start)) return ParseZip(stream, file);
        if (start[0] == 0x80) return ParseLegacy(stream, file);
        if (length >= 262 && IsTar(stream))
            throw Fail(TorchCheckpointReason.LegacyFormat, file, "it is a tar archive (torch.save before 0.4), an unsupported legacy format");
        throw Fail(TorchCheckpointReason.NotACheckpoint, file,
            $"it starts with bytes {Convert.ToHexString(start)}, neither a zip checkpoint (PK) nor a legacy pickle stream (0x80)");
    }

    private static bool IsTar(Stream stream)
    {
        var magic = new byte[5];
        stream.Seek(257, SeekOrigin.Begin);
        stream.ReadExactly(magic);
        return magic.AsSpan().SequenceEqual("ustar"u8);
    }

    // ---- zip -----------------------------------------------------------------------------------------------------

    private static ParsedCheckpoint ParseZip(Stream stream, string file)
    {
        var zip = ZipContainer.Open(stream, file);
        var pickles = zip.Entries.Where(e => e.Name.EndsWith("/data.pkl", StringComparison.Ordinal) && e.Name.IndexOf('/') == e.Name.Length - 9).ToList();
        if (pickles.Count != 1)
            throw Fail(TorchCheckpointReason.MissingRecord, file, pickles.Count == 0
                ? "the zip has no '<prefix>/data.pkl' record, so it is not a torch.save checkpoint"
                : $"the zip has {pickles.Count} '<prefix>/data.pkl' records ({string.Join(", ", pickles.Select(p => p.Name))}), so which one to load is ambiguous");
        string prefix = pickles[0].Name[..^"data.pkl".Length];

        if (zip.Find(prefix + "byteorder") is { } order)
        {
            var text = Encoding.ASCII.GetString(zip.ReadAll(order, 64)).Trim();
            if (text != "little")
                throw Fail(TorchCheckpointReason.UnsupportedByteOrder, file, $"its byteorder record says '{ZipContainer.Shown(text)}', but only little-endian checkpoints are read");
        }

        var pickle = zip.ReadAll(pickles[0], TorchCheckpoint.MaxPickleBytes);
        var storages = new Dictionary<string, StorageRef>(StringComparer.Ordinal);
        var records = new Dictionary<StorageRef, ZipEntry>();
        object PersistentLoad(PyTuple pid, long at)
        {
            var s = CheckPersistentId(pid, legacy: false, storages, file, pickles[0].Name, at);
            if (records.ContainsKey(s)) return s;
            string recordName = $"{prefix}data/{s.Key}";
            var entry = zip.Find(recordName)
                ?? throw Fail(TorchCheckpointReason.MissingRecord, file, $"storage '{s.Key}' has no record '{ZipContainer.Shown(recordName)}' in the zip");
            long expected = ByteLength(s, file);
            if (entry.Size != expected)
                throw Fail(TorchCheckpointReason.RecordSizeMismatch, file,
                    $"storage '{s.Key}' is {s.DType.StorageName} with {s.Numel} elements ({expected} bytes) but its record '{entry.Name}' holds {entry.Size} bytes");
            records[s] = entry;
            return s;
        }

        using var input = new MemoryStream(pickle, writable: false);
        var root = new RestrictedUnpickler(input, pickle.Length, file, pickles[0].Name, PersistentLoad).Load();
        if (input.Position != pickle.Length)
            throw Fail(TorchCheckpointReason.MalformedPickle, file, $"{pickles[0].Name} has {pickle.Length - input.Position} bytes after its STOP opcode");
        return new ParsedCheckpoint
        {
            Tensors = StateDictEntries(root, file),
            ReadStorage = (s, t) => zip.ReadInto(records[s], t),
            FileLength = stream.Length,
        };
    }

    // ---- legacy --------------------------------------------------------------------------------------------------

    // Each legacy pickle gets the zip format's pickle cap: without it the object pickle could run to the file's end.
    private static long PickleEnd(Stream stream, long length) => Math.Min(length, stream.Position + TorchCheckpoint.MaxPickleBytes);

    // magic number, protocol version, sys_info, the object, the sorted storage keys, then per key: int64 count + raw bytes.
    private static ParsedCheckpoint ParseLegacy(Stream stream, string file)
    {
        long length = stream.Length;
        stream.Seek(0, SeekOrigin.Begin);
        object NoPersistentIds(PyTuple pid, long at) =>
            throw Fail(TorchCheckpointReason.LegacyFormat, file, $"a legacy header pickle has a persistent id at byte {at}, which torch.save never writes there");

        var magic = new RestrictedUnpickler(stream, PickleEnd(stream, length), file, "the legacy magic-number pickle", NoPersistentIds).Load();
        if (!(magic is BigInteger m && m == LegacyMagic))
            throw Fail(TorchCheckpointReason.NotACheckpoint, file,
                "it starts with a pickle that is not torch's legacy magic number 0x1950a86a20f9469cfc6c, so it is not a PyTorch checkpoint");
        var protocol = new RestrictedUnpickler(stream, PickleEnd(stream, length), file, "the legacy protocol pickle", NoPersistentIds).Load();
        if (!(protocol is long p && p == LegacyProtocol))
            throw Fail(TorchCheckpointReason.LegacyFormat, file, $"its legacy protocol version is {Describe(protocol)}, expected {LegacyProtocol}");
        var sysInfo = new RestrictedUnpickler(stream, PickleEnd(stream, length), file, "the legacy sys_info pickle", NoPersistentIds).Load();
        if (sysInfo is not PyDict info)
            throw Fail(TorchCheckpointReason.LegacyFormat, file, $"its legacy sys_info is {RestrictedUnpickler.TypeName(sysInfo)}, expected a dict");
        if (info.Get("little_endian") is not true)
            throw Fail(TorchCheckpointReason.UnsupportedByteOrder, file, "its legacy sys_info does not say little_endian=True, and only little-endian checkpoints are read");

        var storages = new Dictionary<string, StorageRef>(StringComparer.Ordinal);
        object PersistentLoad(PyTuple pid, long at) => CheckPersistentId(pid, legacy: true, storages, file, "the legacy object pickle", at);
        var root = new RestrictedUnpickler(stream, PickleEnd(stream, length), file, "the legacy object pickle", PersistentLoad).Load();
        var tensors = StateDictEntries(root, file);

        var keyList = new RestrictedUnpickler(stream, PickleEnd(stream, length), file, "the legacy storage-key pickle", NoPersistentIds).Load();
        if (keyList is not PyList list || list.Items.Any(k => k is not string))
            throw Fail(TorchCheckpointReason.LegacyFormat, file, $"its legacy storage-key list is {RestrictedUnpickler.TypeName(keyList)}, expected a list of strings");
        var keys = list.Items.Cast<string>().ToList();
        var keySet = keys.ToHashSet(StringComparer.Ordinal);
        if (keySet.Count != keys.Count)
            throw Fail(TorchCheckpointReason.LegacyFormat, file, "its legacy storage-key list names one storage twice");
        var unreferenced = keys.FirstOrDefault(k => !storages.ContainsKey(k));
        if (unreferenced is not null)
            throw Fail(TorchCheckpointReason.LegacyFormat, file, $"its legacy storage-key list names '{ZipContainer.Shown(unreferenced)}', which no tensor uses, so its type is unknown");
        var missing = storages.Keys.FirstOrDefault(k => !keySet.Contains(k));
        if (missing is not null)
            throw Fail(TorchCheckpointReason.MissingRecord, file, $"storage '{ZipContainer.Shown(missing)}' is used by a tensor but absent from the legacy storage-key list");

        // Walk the raw storages once, checking every count and length against the file before anything is allocated.
        var offsets = new Dictionary<StorageRef, long>();
        long pos = stream.Position;
        Span<byte> countBytes = stackalloc byte[8];
        foreach (var key in keys)
        {
            var s = storages[key];
            if (length - pos < 8)
                throw Fail(TorchCheckpointReason.LegacyFormat, file, $"the file ends before the element count of storage '{key}' (truncated)");
            stream.Seek(pos, SeekOrigin.Begin);
            stream.ReadExactly(countBytes);
            long count = BinaryPrimitives.ReadInt64LittleEndian(countBytes);
            long bytes = ByteLength(s, file);
            if (count != s.Numel)
                throw Fail(TorchCheckpointReason.RecordSizeMismatch, file, $"storage '{key}' is declared with {s.Numel} elements but its raw data says {count}");
            if (length - pos - 8 < bytes)
                throw Fail(TorchCheckpointReason.RecordSizeMismatch, file, $"storage '{key}' needs {bytes} bytes but only {length - pos - 8} remain (truncated)");
            offsets[s] = pos + 8;
            pos += 8 + bytes;
        }
        if (pos != length)
            throw Fail(TorchCheckpointReason.LegacyFormat, file, $"{length - pos} bytes follow the last legacy storage, which torch.save never writes");

        return new ParsedCheckpoint
        {
            Tensors = tensors,
            ReadStorage = (s, t) =>
            {
                stream.Seek(offsets[s], SeekOrigin.Begin);
                TensorBytes.ReadInto(t, stream);
            },
            FileLength = length,
        };
    }

    // ---- shared --------------------------------------------------------------------------------------------------

    // zip: ('storage', StorageType, key, location, numel); legacy adds view_metadata, which must be None.
    private static StorageRef CheckPersistentId(PyTuple pid, bool legacy, Dictionary<string, StorageRef> storages, string file, string what, long at)
    {
        var a = pid.Items;
        string form = legacy ? "('storage', StorageType, key, location, numel, None)" : "('storage', StorageType, key, location, numel)";
        string where = $"{what} at byte {at}";
        if (a.Length != (legacy ? 6 : 5) || a[0] is not "storage")
            throw Fail(TorchCheckpointReason.BadPersistentId, file, $"{where} has a persistent id that is not {form}");
        if (a[1] is not PyGlobal { Kind: GlobalKind.Storage, DType: { } dtype })
            throw Fail(TorchCheckpointReason.BadPersistentId, file, $"{where} has a persistent id whose storage type is {RestrictedUnpickler.TypeName(a[1])}, expected a torch.*Storage");
        if (a[2] is not string key || !IsSafeKey(key))
            throw Fail(TorchCheckpointReason.BadPersistentId, file, $"{where} has a persistent id whose key is not a short string of letters, digits, '_' or '-'");
        if (a[3] is not string location || location.Length > 64)
            throw Fail(TorchCheckpointReason.BadPersistentId, file, $"{where} has a persistent id whose location is not a short string");
        if (a[4] is not long numel || numel < 0)
            throw Fail(TorchCheckpointReason.BadPersistentId, file, $"{where} has a persistent id whose element count is {Describe(a[4])}, expected a non-negative integer");
        if (legacy && a[5] is not PyNone)
            throw Fail(TorchCheckpointReason.LegacyFormat, file, $"{where} has a storage view (view_metadata), an old legacy layout this reader does not support");
        if (storages.TryGetValue(key, out var known))
        {
            if (known.DType != dtype || known.Numel != numel)
                throw Fail(TorchCheckpointReason.BadPersistentId, file,
                    $"{where} declares storage '{key}' as {dtype.StorageName} of {numel} elements, but earlier as {known.DType.StorageName} of {known.Numel}");
            return known;
        }
        var s = new StorageRef(dtype, key, location, numel);
        ByteLength(s, file);
        storages[key] = s;
        return s;
    }

    private static bool IsSafeKey(string key) =>
        key.Length is > 0 and <= 128 && key.All(c => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_' or '-');

    private static long ByteLength(StorageRef s, string file)
    {
        try
        {
            return checked(s.Numel * s.DType.ElementSize);
        }
        catch (OverflowException)
        {
            throw Fail(TorchCheckpointReason.SizeOverflow, file, $"storage '{s.Key}' declares {s.Numel} elements of {s.DType.ElementSize} bytes, which overflows 64-bit arithmetic");
        }
    }

    private static List<(string, TensorRef)> StateDictEntries(object root, string file)
    {
        if (root is not PyDict dict)
            throw Fail(TorchCheckpointReason.NotAStateDict, file, $"the pickle holds {RestrictedUnpickler.TypeName(root)}, expected a state dict (a dict of tensors)");
        var list = new List<(string, TensorRef)>(dict.Items.Count);
        foreach (var (key, value) in dict.Items)
        {
            if (value is not TensorRef t)
                throw Fail(TorchCheckpointReason.NotAStateDict, file,
                    $"state-dict entry '{ZipContainer.Shown(key)}' is {RestrictedUnpickler.TypeName(value)}, expected a tensor (nested checkpoints are not read)");
            list.Add((key, t));
        }
        return list;
    }

    /// <summary>
    /// Allocates each used storage once (its size was matched to the file's bytes), reads it, then hands out one tensor
    /// per entry: the storage itself when an entry is exactly the whole storage, otherwise a contiguous copy of the view.
    /// Copies may add at most the file's length again, so the result is never larger than twice the file.
    /// </summary>
    public static Dictionary<string, Tensor> Materialize(ParsedCheckpoint parsed, string file, string keyPrefix, out long allocated)
    {
        allocated = 0;
        var uses = new Dictionary<StorageRef, int>();
        foreach (var (_, t) in parsed.Tensors) uses[t.Storage] = uses.GetValueOrDefault(t.Storage) + 1;
        long copyBudget = parsed.FileLength;
        foreach (var (name, t) in parsed.Tensors)
        {
            if (uses[t.Storage] == 1 && t.IsWholeStorage) continue;
            copyBudget -= t.Numel * t.Storage.DType.ElementSize;
            if (copyBudget < 0)
                throw Fail(TorchCheckpointReason.ResourceLimit, file,
                    $"its tensor views (up to '{ZipContainer.Shown(name)}') would need more copied memory than the file's {parsed.FileLength} bytes justify");
        }

        var storages = new Dictionary<StorageRef, Tensor>();
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        bool ok = false;
        try
        {
            foreach (var (_, t) in parsed.Tensors)
            {
                if (storages.ContainsKey(t.Storage)) continue;
                var s = t.Storage;
                var tensor = torch.empty(s.Numel, s.DType.ScalarType);
                storages[s] = tensor;
                allocated += s.ByteLength;
                parsed.ReadStorage(s, tensor);
                if (s.DType.ScalarType == ScalarType.Bool) CheckBools(tensor, s, file);
            }
            foreach (var (name, t) in parsed.Tensors)
            {
                var storage = storages[t.Storage];
                Tensor value;
                if (uses[t.Storage] == 1 && t.IsWholeStorage)
                {
                    value = storage.view(t.Size);
                }
                else
                {
                    using var view = storage.as_strided(t.Size, t.Stride, t.Offset);
                    value = torch.empty(t.Size, t.Storage.DType.ScalarType);
                    value.copy_(view);
                    allocated += t.Numel * t.Storage.DType.ElementSize;
                }
                if (!result.TryAdd(keyPrefix + name, value))
                {
                    value.Dispose();
                    throw Fail(TorchCheckpointReason.DuplicateKey, file, $"the key '{ZipContainer.Shown(keyPrefix + name)}' appears twice");
                }
            }
            ok = true;
            return result;
        }
        finally
        {
            foreach (var s in storages.Values) s.Dispose();
            if (!ok)
                foreach (var v in result.Values) v.Dispose();
        }
    }

    private static void CheckBools(Tensor tensor, StorageRef s, string file)
    {
        if (TensorBytes.FirstNonBool(tensor) is var (i, b))
            throw Fail(TorchCheckpointReason.BadTensorData, file, $"bool storage '{s.Key}' holds the byte {b} at element {i}, but a bool must be 0 or 1");
    }

    private static string Describe(object? value) => value switch
    {
        long l => l.ToString(System.Globalization.CultureInfo.InvariantCulture),
        _ => RestrictedUnpickler.TypeName(value),
    };

    private static TorchCheckpointException Fail(TorchCheckpointReason reason, string file, string text) => ZipContainer.Fail(reason, file, text);
}
