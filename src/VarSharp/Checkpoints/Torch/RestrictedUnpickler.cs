using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using TorchSharp;

namespace VarSharp.Checkpoints.Torch;

/// <summary>
/// A pickle virtual machine that understands only what a PyTorch state dict needs. Opcodes outside that subset and
/// globals outside a fixed allow-list are refused the moment they are read, so nothing is ever looked up, imported or
/// called: REDUCE only ever "calls" one of three known reconstructors, implemented here as plain data checks. Every
/// length is checked against the bytes that remain before anything is allocated, and nothing walks the object graph
/// recursively, so a deeply nested pickle cannot overflow the stack.
/// </summary>
internal sealed class RestrictedUnpickler
{
    /// <summary>No string in a state-dict pickle is anywhere near this long (keys, locations, storage keys).</summary>
    public const int MaxStringBytes = 1 << 20;

    /// <summary>
    /// The most values (pushes and memo writes) one pickle may make. A state dict of the largest VAR model makes about
    /// 30 per tensor, tens of thousands in all; without a cap a pickle of one-byte opcodes (EMPTY_DICT, MEMOIZE) makes
    /// a value per byte, and at about 140 bytes each a 256 MB pickle would ask for 35 GB.
    /// </summary>
    public const int MaxValues = 2_000_000;

    /// <summary>Tensors in PyTorch have at most 64 dimensions.</summary>
    public const int MaxDims = SafeTensorsHeaderJson.MaxRank;

    public static readonly IReadOnlyDictionary<string, TorchDType> StorageTypes = new[]
    {
        new TorchDType("FloatStorage", torch.ScalarType.Float32, 4),
        new TorchDType("DoubleStorage", torch.ScalarType.Float64, 8),
        new TorchDType("HalfStorage", torch.ScalarType.Float16, 2),
        new TorchDType("BFloat16Storage", torch.ScalarType.BFloat16, 2),
        new TorchDType("LongStorage", torch.ScalarType.Int64, 8),
        new TorchDType("IntStorage", torch.ScalarType.Int32, 4),
        new TorchDType("ShortStorage", torch.ScalarType.Int16, 2),
        new TorchDType("CharStorage", torch.ScalarType.Int8, 1),
        new TorchDType("ByteStorage", torch.ScalarType.Byte, 1),
        new TorchDType("BoolStorage", torch.ScalarType.Bool, 1),
    }.ToDictionary(t => t.StorageName, StringComparer.Ordinal);

    private static readonly Dictionary<string, PyGlobal> AllowedGlobals = BuildAllowList();

    public const string AllowListText =
        "collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and the torch.*Storage types";

    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    private readonly Stream _input;
    private readonly long _end;
    private readonly string _file;
    private readonly string _what;
    private readonly Func<PyTuple, long, object> _persistentLoad;
    private readonly List<object> _stack = [];
    private readonly List<int> _marks = [];
    private readonly Dictionary<long, object> _memo = [];
    private long _opPosition;
    private int _values;

    /// <param name="input">Positioned at the pickle's first byte; left just after its STOP.</param>
    /// <param name="end">Where the readable bytes end (the pickle may stop earlier).</param>
    /// <param name="persistentLoad">Turns a persistent id tuple into a storage, or throws.</param>
    public RestrictedUnpickler(Stream input, long end, string file, string what, Func<PyTuple, long, object> persistentLoad)
    {
        _input = input;
        _end = end;
        _file = file;
        _what = what;
        _persistentLoad = persistentLoad;
    }

    private long Remaining => _end - _input.Position;

    public object Load()
    {
        while (true)
        {
            _opPosition = _input.Position;
            if (Remaining <= 0) throw Malformed("it ends without a STOP opcode (truncated)");
            int op = _input.ReadByte();
            switch (op)
            {
                case 0x80: // PROTO
                {
                    int proto = ReadByte();
                    if (proto is < 2 or > 5) throw Fail(TorchCheckpointReason.ForbiddenOpcode, $"declares pickle protocol {proto}, but only protocols 2 to 5 are read");
                    break;
                }
                case 0x95: // FRAME: a hint for buffering; the length must still fit.
                {
                    ulong len = ReadU64();
                    if (len > (ulong)Remaining) throw Malformed($"declares a {len}-byte frame but only {Remaining} bytes remain");
                    break;
                }
                case '.': // STOP
                {
                    if (_marks.Count != 0 || _stack.Count != 1)
                        throw Malformed($"stops with {_stack.Count} values on the stack and {_marks.Count} open marks, expected exactly one value");
                    return _stack[0];
                }
                case '(': _marks.Add(_stack.Count); break; // MARK
                case ')': Push(PyTuple.Empty); break; // EMPTY_TUPLE
                case '}': Push(new PyDict(false)); break; // EMPTY_DICT
                case ']': Push(new PyList()); break; // EMPTY_LIST
                case 'N': Push(PyNone.Instance); break;
                case 0x88: Push(true); break; // NEWTRUE
                case 0x89: Push(false); break; // NEWFALSE
                case 'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(ReadSpan(4))); break; // BININT
                case 'K': Push((long)ReadByte()); break; // BININT1
                case 'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(ReadSpan(2))); break; // BININT2
                case 0x8a: Push(ReadLong1()); break; // LONG1
                case 'G': Push(BinaryPrimitives.ReadDoubleBigEndian(ReadSpan(8))); break; // BINFLOAT
                case 'X': Push(ReadString(BinaryPrimitives.ReadUInt32LittleEndian(ReadSpan(4)))); break; // BINUNICODE
                case 0x8c: Push(ReadString((ulong)ReadByte())); break; // SHORT_BINUNICODE
                case 0x8d: Push(ReadString(ReadU64())); break; // BINUNICODE8
                case 'q': Memo(ReadByte()); break; // BINPUT
                case 'r': Memo(BinaryPrimitives.ReadUInt32LittleEndian(ReadSpan(4))); break; // LONG_BINPUT
                case 0x94: Memo(_memo.Count); break; // MEMOIZE
                case 'h': Push(Recall(ReadByte())); break; // BINGET
                case 'j': Push(Recall(BinaryPrimitives.ReadUInt32LittleEndian(ReadSpan(4)))); break; // LONG_BINGET
                case 't': Push(new PyTuple(PopToMark())); break; // TUPLE
                case 0x85: Push(new PyTuple([Pop()])); break; // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); Push(new PyTuple([a, b])); break; } // TUPLE2
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new PyTuple([a, b, c])); break; } // TUPLE3
                case 'c': Push(Resolve(ReadLine("module"), ReadLine("name"))); break; // GLOBAL
                case 0x93: // STACK_GLOBAL
                {
                    var name = Pop();
                    var module = Pop();
                    if (module is not string m || name is not string n)
                        throw Malformed("STACK_GLOBAL expects two strings (module, name) on the stack");
                    Push(Resolve(m, n));
                    break;
                }
                case 'Q': // BINPERSID
                {
                    var pid = Pop();
                    if (pid is not PyTuple t)
                        throw Fail(TorchCheckpointReason.BadPersistentId, $"has a persistent id that is {TypeName(pid)}, expected a tuple ('storage', type, key, location, numel)");
                    Push(_persistentLoad(t, _opPosition));
                    break;
                }
                case 'R': // REDUCE
                {
                    var args = Pop();
                    var callable = Pop();
                    Push(Reduce(callable, args));
                    break;
                }
                case 'b': Build(); break; // BUILD
                case 's': // SETITEM
                {
                    var value = Pop();
                    var key = Pop();
                    SetItem(Peek(), key, value);
                    break;
                }
                case 'u': // SETITEMS
                {
                    var items = PopToMark();
                    if (items.Length % 2 != 0) throw Malformed("SETITEMS has an odd number of values after its mark");
                    var target = Peek();
                    for (int i = 0; i < items.Length; i += 2) SetItem(target, items[i], items[i + 1]);
                    break;
                }
                case 'a': // APPEND
                {
                    var value = Pop();
                    if (Peek() is not PyList list) throw Malformed($"APPEND targets {TypeName(Peek())}, expected a list");
                    list.Items.Add(value);
                    break;
                }
                case 'e': // APPENDS
                {
                    var items = PopToMark();
                    if (Peek() is not PyList list) throw Malformed($"APPENDS targets {TypeName(Peek())}, expected a list");
                    list.Items.AddRange(items);
                    break;
                }
                default:
                    throw Fail(TorchCheckpointReason.ForbiddenOpcode,
                        $"uses the pickle opcode {OpcodeName(op)} (0x{op:x2}), which no state dict needs, so it is refused");
            }
        }
    }

    private static Dictionary<string, PyGlobal> BuildAllowList()
    {
        var list = new List<PyGlobal>
        {
            new("collections", "OrderedDict", GlobalKind.OrderedDict),
            new("torch._utils", "_rebuild_tensor_v2", GlobalKind.RebuildTensorV2),
            new("torch._utils", "_rebuild_parameter", GlobalKind.RebuildParameter),
        };
        foreach (var t in StorageTypes.Values) list.Add(new("torch", t.StorageName, GlobalKind.Storage, t));
        return list.ToDictionary(g => g.FullName, StringComparer.Ordinal);
    }

    private PyGlobal Resolve(string module, string name)
    {
        if (AllowedGlobals.TryGetValue($"{module}.{name}", out var g) && g.Module == module) return g;
        throw Fail(TorchCheckpointReason.ForbiddenGlobal,
            $"references the global '{Shown($"{module}.{name}")}', which is not on the allow-list ({AllowListText}), so it is refused before anything is called");
    }

    private object Reduce(object callable, object args)
    {
        if (callable is not PyGlobal g)
            throw Fail(TorchCheckpointReason.ForbiddenCall, $"applies REDUCE to {TypeName(callable)}; only allow-listed reconstructors may be called");
        if (args is not PyTuple t)
            throw Malformed($"passes {TypeName(args)} as the arguments of {g.FullName}, expected a tuple");
        var a = t.Items;
        switch (g.Kind)
        {
            case GlobalKind.OrderedDict:
                if (a.Length != 0) throw Fail(TorchCheckpointReason.ForbiddenCall, $"calls collections.OrderedDict with {a.Length} arguments; a state dict is built empty and filled with SETITEMS");
                return new PyDict(true);
            case GlobalKind.RebuildTensorV2:
                return RebuildTensor(a);
            case GlobalKind.RebuildParameter:
                if (a.Length != 3 || a[0] is not TensorRef data || a[1] is not bool || !IsEmptyOrderedDict(a[2]))
                    throw Fail(TorchCheckpointReason.ForbiddenCall, "calls torch._utils._rebuild_parameter with arguments other than (tensor, requires_grad, empty OrderedDict of hooks)");
                return data.AsParameter();
            default:
                throw Fail(TorchCheckpointReason.ForbiddenCall, $"calls {g.FullName}, which is a storage type, not a reconstructor");
        }
    }

    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    private TensorRef RebuildTensor(object[] a)
    {
        const string Call = "torch._utils._rebuild_tensor_v2";
        if (a.Length is not (6 or 7))
            throw Fail(TorchCheckpointReason.ForbiddenCall, $"calls {Call} with {a.Length} arguments, expected 6 or 7");
        if (a[0] is not StorageRef storage)
            throw Fail(TorchCheckpointReason.ForbiddenCall, $"calls {Call} on {TypeName(a[0])}, expected a storage from a persistent id");
        if (a[1] is not long offset)
            throw Fail(TorchCheckpointReason.BadTensorGeometry, $"calls {Call} with a storage offset that is {TypeName(a[1])}, expected an integer");
        var size = Dims(a[2], "size");
        var stride = Dims(a[3], "stride");
        if (a[4] is not bool)
            throw Fail(TorchCheckpointReason.ForbiddenCall, $"calls {Call} with requires_grad {TypeName(a[4])}, expected a bool");
        if (!IsEmptyOrderedDict(a[5]))
            throw Fail(TorchCheckpointReason.ForbiddenCall, $"calls {Call} with backward hooks, which a saved state dict never has");
        if (a.Length == 7 && a[6] is not PyNone && !(a[6] is PyDict { Items.Count: 0 }))
            throw Fail(TorchCheckpointReason.ForbiddenCall, $"calls {Call} with tensor metadata, which this reader does not accept");
        return CheckGeometry(storage, offset, size, stride);
    }

    private long[] Dims(object value, string what)
    {
        if (value is not PyTuple t)
            throw Fail(TorchCheckpointReason.BadTensorGeometry, $"gives a tensor {what} that is {TypeName(value)}, expected a tuple of integers");
        if (t.Items.Length > MaxDims)
            throw Fail(TorchCheckpointReason.BadTensorGeometry, $"gives a tensor {what} with {t.Items.Length} dimensions, more than PyTorch's {MaxDims}");
        var dims = new long[t.Items.Length];
        for (int i = 0; i < dims.Length; i++)
        {
            if (t.Items[i] is long v) dims[i] = v;
            else if (t.Items[i] is BigInteger) throw Fail(TorchCheckpointReason.SizeOverflow, $"gives a tensor {what} entry that does not fit in 64 bits");
            else throw Fail(TorchCheckpointReason.BadTensorGeometry, $"gives a tensor {what} entry that is {TypeName(t.Items[i])}, expected an integer");
        }
        return dims;
    }

    private TensorRef CheckGeometry(StorageRef storage, long offset, long[] size, long[] stride)
    {
        string shape = $"size ({string.Join(", ", size)}), stride ({string.Join(", ", stride)}), offset {offset}";
        if (size.Length != stride.Length)
            throw Fail(TorchCheckpointReason.BadTensorGeometry, $"gives a tensor with {shape}: sizes and strides differ in length");
        if (offset < 0 || size.Any(s => s < 0) || stride.Any(s => s < 0))
            throw Fail(TorchCheckpointReason.BadTensorGeometry, $"gives a tensor with {shape}: sizes, strides and offset must be non-negative");
        long numel = 1, last = offset;
        try
        {
            foreach (var s in size) numel = checked(numel * s);
            if (numel > 0)
                for (int i = 0; i < size.Length; i++) last = checked(last + checked((size[i] - 1) * stride[i]));
        }
        catch (OverflowException)
        {
            throw Fail(TorchCheckpointReason.SizeOverflow, $"gives a tensor with {shape}, whose element count or extent overflows 64-bit arithmetic");
        }
        if (numel > 0 ? last >= storage.Numel : offset > storage.Numel)
            throw Fail(TorchCheckpointReason.TensorOutOfBounds,
                $"gives a tensor with {shape} that reads up to element {last} of storage '{Shown(storage.Key)}', which holds only {storage.Numel}");
        if (numel > storage.Numel)
            throw Fail(TorchCheckpointReason.ResourceLimit,
                $"gives a tensor with {shape}: {numel} elements from a {storage.Numel}-element storage would expand the file's data");
        return new TensorRef(storage, offset, size, stride, numel, false);
    }

    private static bool IsEmptyOrderedDict(object value) => value is PyDict { IsOrderedDict: true, Items.Count: 0, HasMetadata: false };

    // BUILD is accepted for exactly one thing torch writes: setting `_metadata` on the state dict OrderedDict.
    private void Build()
    {
        var state = Pop();
        var target = Peek();
        if (target is PyDict { IsOrderedDict: true, HasMetadata: false } dict
            && state is PyDict { IsOrderedDict: false, Items.Count: 1 } s
            && s.Items[0].Key == "_metadata"
            && s.Items[0].Value is PyDict or PyNone)
        {
            dict.HasMetadata = true;
            return;
        }
        throw Fail(TorchCheckpointReason.ForbiddenCall,
            $"applies BUILD to {TypeName(target)} with {TypeName(state)}; only setting _metadata on an OrderedDict is accepted");
    }

    private void SetItem(object target, object key, object value)
    {
        if (target is not PyDict dict) throw Malformed($"sets an item on {TypeName(target)}, expected a dict");
        if (key is not string k) throw Malformed($"uses {TypeName(key)} as a dictionary key, expected a string");
        if (!dict.TryAdd(k, value))
            throw Fail(TorchCheckpointReason.DuplicateKey, $"sets the key '{Shown(k)}' twice in one dictionary");
    }

    private void Push(object value)
    {
        Count();
        _stack.Add(value);
    }

    private void Count()
    {
        if (++_values > MaxValues)
            throw Fail(TorchCheckpointReason.ResourceLimit, $"makes more than the {MaxValues} values this reader accepts from one pickle, far more than any state dict needs");
    }

    private object Pop()
    {
        int floor = _marks.Count > 0 ? _marks[^1] : 0;
        if (_stack.Count <= floor) throw Malformed("pops a value from an empty stack");
        var v = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return v;
    }

    private object Peek()
    {
        int floor = _marks.Count > 0 ? _marks[^1] : 0;
        if (_stack.Count <= floor) throw Malformed("needs a value but the stack is empty");
        return _stack[^1];
    }

    private object[] PopToMark()
    {
        if (_marks.Count == 0) throw Malformed("has no MARK to pop to");
        int mark = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        var items = _stack.GetRange(mark, _stack.Count - mark).ToArray();
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private void Memo(long index)
    {
        Count();
        _memo[index] = Peek();
    }

    private object Recall(long index) =>
        _memo.TryGetValue(index, out var v) ? v : throw Malformed($"reads memo slot {index}, which was never written");

    private int ReadByte()
    {
        if (Remaining < 1) throw Malformed("ends in the middle of an opcode (truncated)");
        return _input.ReadByte();
    }

    private byte[] ReadSpan(int count)
    {
        if (Remaining < count) throw Malformed("ends in the middle of an opcode (truncated)");
        var b = new byte[count];
        _input.ReadExactly(b);
        return b;
    }

    private ulong ReadU64() => BinaryPrimitives.ReadUInt64LittleEndian(ReadSpan(8));

    private object ReadLong1()
    {
        int n = ReadByte();
        var bytes = ReadSpan(n);
        if (n == 0) return 0L;
        if (n <= 8)
        {
            long v = 0;
            for (int i = n - 1; i >= 0; i--) v = (v << 8) | bytes[i];
            int shift = 64 - 8 * n;
            return shift == 0 ? v : (v << shift) >> shift; // sign-extend
        }
        var big = new BigInteger(bytes, isUnsigned: false, isBigEndian: false);
        return big >= long.MinValue && big <= long.MaxValue ? (long)big : big;
    }

    private string ReadString(ulong length)
    {
        if (length > MaxStringBytes)
            throw Fail(TorchCheckpointReason.ResourceLimit, $"declares a {length}-byte string, more than the {MaxStringBytes} this reader accepts");
        if (length > (ulong)Remaining) throw Malformed($"declares a {length}-byte string but only {Remaining} bytes remain (truncated)");
        var bytes = ReadSpan((int)length);
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw Malformed("holds a string that is not valid UTF-8");
        }
    }

    private string ReadLine(string what)
    {
        var sb = new StringBuilder();
        while (true)
        {
            int b = ReadByte();
            if (b == '\n') return sb.ToString();
            if (b is < 0x20 or > 0x7e) throw Malformed($"has a GLOBAL {what} with a non-printable byte 0x{b:x2}");
            if (sb.Length >= 256) throw Malformed($"has a GLOBAL {what} longer than 256 characters");
            sb.Append((char)b);
        }
    }

    internal static string TypeName(object? v) => v switch
    {
        null or PyNone => "None",
        bool => "a bool",
        long or BigInteger => "an integer",
        double => "a float",
        string => "a string",
        PyTuple t => $"a {t.Items.Length}-tuple",
        PyList => "a list",
        PyDict { IsOrderedDict: true } => "an OrderedDict",
        PyDict => "a dict",
        PyGlobal g => g.FullName,
        StorageRef => "a storage",
        TensorRef => "a tensor",
        _ => v.GetType().Name,
    };

    internal static string Shown(string text) => ZipContainer.Shown(text);

    private TorchCheckpointException Malformed(string text) => Fail(TorchCheckpointReason.MalformedPickle, text);

    public TorchCheckpointException Fail(TorchCheckpointReason reason, string text) =>
        new(reason, $"{_file}: {_what} at byte {_opPosition} {text}.");

    private static readonly Dictionary<int, string> OpcodeNames = new()
    {
        ['('] = "MARK", ['.'] = "STOP", ['0'] = "POP", ['1'] = "POP_MARK", ['2'] = "DUP", ['F'] = "FLOAT", ['I'] = "INT",
        ['J'] = "BININT", ['K'] = "BININT1", ['L'] = "LONG", ['M'] = "BININT2", ['N'] = "NONE", ['P'] = "PERSID",
        ['Q'] = "BINPERSID", ['R'] = "REDUCE", ['S'] = "STRING", ['T'] = "BINSTRING", ['U'] = "SHORT_BINSTRING",
        ['V'] = "UNICODE", ['X'] = "BINUNICODE", ['a'] = "APPEND", ['b'] = "BUILD", ['c'] = "GLOBAL", ['d'] = "DICT",
        ['}'] = "EMPTY_DICT", ['e'] = "APPENDS", ['g'] = "GET", ['h'] = "BINGET", ['i'] = "INST", ['j'] = "LONG_BINGET",
        ['l'] = "LIST", [']'] = "EMPTY_LIST", ['o'] = "OBJ", ['p'] = "PUT", ['q'] = "BINPUT", ['r'] = "LONG_BINPUT",
        ['s'] = "SETITEM", ['t'] = "TUPLE", [')'] = "EMPTY_TUPLE", ['u'] = "SETITEMS", ['G'] = "BINFLOAT",
        ['B'] = "BINBYTES", ['C'] = "SHORT_BINBYTES",
        [0x80] = "PROTO", [0x81] = "NEWOBJ", [0x82] = "EXT1", [0x83] = "EXT2", [0x84] = "EXT4", [0x85] = "TUPLE1",
        [0x86] = "TUPLE2", [0x87] = "TUPLE3", [0x88] = "NEWTRUE", [0x89] = "NEWFALSE", [0x8a] = "LONG1", [0x8b] = "LONG4",
        [0x8c] = "SHORT_BINUNICODE", [0x8d] = "BINUNICODE8", [0x8e] = "BINBYTES8", [0x8f] = "EMPTY_SET",
        [0x90] = "ADDITEMS", [0x91] = "FROZENSET", [0x92] = "NEWOBJ_EX", [0x93] = "STACK_GLOBAL", [0x94] = "MEMOIZE",
        [0x95] = "FRAME", [0x96] = "BYTEARRAY8", [0x97] = "NEXT_BUFFER", [0x98] = "READONLY_BUFFER",
    };

    internal static string OpcodeName(int op) => OpcodeNames.TryGetValue(op, out var n) ? n : "(unknown)";
}
