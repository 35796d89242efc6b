using TorchSharp;

namespace VarSharp.Checkpoints.Torch;

// The only values the restricted unpickler can produce. Plain data (None, bool, long, BigInteger, double, string) is
// stored as the boxed CLR value; everything else is one of these small classes. None of them can run code.

internal sealed class PyNone
{
    public static readonly PyNone Instance = new();
    private PyNone() { }
}

internal sealed class PyTuple(object[] items)
{
    public static readonly PyTuple Empty = new([]);
    public object[] Items { get; } = items;
}

internal sealed class PyList
{
    public List<object> Items { get; } = [];
}

/// <summary>A dict or OrderedDict with string keys, in insertion order; a key set twice is refused.</summary>
internal sealed class PyDict(bool ordered)
{
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);

    public bool IsOrderedDict { get; } = ordered;

    public List<KeyValuePair<string, object>> Items { get; } = [];

    /// <summary>True once BUILD has set the `_metadata` attribute (ignored, as torch's own loader ignores it for tensors).</summary>
    public bool HasMetadata { get; set; }

    public bool TryAdd(string key, object value)
    {
        if (!_keys.Add(key)) return false;
        Items.Add(new(key, value));
        return true;
    }

    public object? Get(string key) => Items.FirstOrDefault(kv => kv.Key == key).Value;
}

internal enum GlobalKind
{
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage,
}

/// <summary>An allow-listed global; anything else never becomes an object.</summary>
internal sealed class PyGlobal(string module, string name, GlobalKind kind, TorchDType? dtype = null)
{
    public string Module { get; } = module;
    public string Name { get; } = name;
    public GlobalKind Kind { get; } = kind;
    public TorchDType? DType { get; } = dtype;
    public string FullName => $"{Module}.{Name}";
}

/// <summary>A storage type torch.*Storage and what it maps to.</summary>
internal sealed record TorchDType(string StorageName, torch.ScalarType ScalarType, int ElementSize);

/// <summary>A persistent id ('storage', type, key, location, numel) after validation; one object per key.</summary>
internal sealed class StorageRef(TorchDType dtype, string key, string location, long numel)
{
    public TorchDType DType { get; } = dtype;
    public string Key { get; } = key;
    public string Location { get; } = location;
    public long Numel { get; } = numel;
    public long ByteLength => Numel * DType.ElementSize;
}

/// <summary>A tensor view of a storage, bounds-checked when created; nothing is allocated until the whole pickle has been read.</summary>
internal sealed class TensorRef(StorageRef storage, long offset, long[] size, long[] stride, long numel, bool isParameter)
{
    public StorageRef Storage { get; } = storage;
    public long Offset { get; } = offset;
    public long[] Size { get; } = size;
    public long[] Stride { get; } = stride;
    public long Numel { get; } = numel;
    public bool IsParameter { get; } = isParameter;

    public TensorRef AsParameter() => new(Storage, Offset, Size, Stride, Numel, true);

    /// <summary>True when the view is the whole storage in row-major order, so the storage itself can be handed out.</summary>
    public bool IsWholeStorage
    {
        get
        {
            if (Offset != 0 || Numel != Storage.Numel) return false;
            long expected = 1;
            for (int i = Size.Length - 1; i >= 0; i--)
            {
                if (Size[i] != 1 && Stride[i] != expected) return false;
                expected *= Size[i];
            }
            return true;
        }
    }
}
