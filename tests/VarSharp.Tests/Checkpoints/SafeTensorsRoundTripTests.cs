using System.Buffers.Binary;
using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Checkpoints;

public class SafeTensorsRoundTripTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    public static TheoryData<string> DTypes() => ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "C64"];

    [Theory]
    [MemberData(nameof(DTypes))]
    public void EveryDTypeRoundTripsBitExactly(string dtype)
    {
        using var original = SampleTensor(dtype, [2, 3]);
        var path = _temp.File($"{dtype}.safetensors");

        SafeTensors.Save(path, [new("t", original)]);
        var loaded = SafeTensors.Load(path);

        Assert.Equal(dtype, SafeTensors.ReadHeader(path).Entries.Single().DType);
        AssertSameTensor(original, Assert.Single(loaded).Value);
        DisposeAll(loaded);
    }

    [Fact]
    public void ScalarsEmptyTensorsAndNonContiguousInputsRoundTrip()
    {
        using var scalar = torch.tensor(3.5f);
        using var empty = torch.empty(0, 4, dtype: torch.int64);
        using var emptyTail = torch.empty(3, 0, dtype: torch.float16);
        using var square = torch.arange(12, dtype: torch.float32).reshape(3, 4);
        using var transposed = square.t();
        var tensors = new Dictionary<string, torch.Tensor>
        {
            ["scalar"] = scalar, ["empty"] = empty, ["emptyTail"] = emptyTail, ["transposed"] = transposed,
        };
        var path = _temp.File("shapes.safetensors");

        SafeTensors.Save(path, tensors);
        var loaded = SafeTensors.Load(path);

        Assert.Equal(tensors.Keys, loaded.Keys);
        foreach (var (name, tensor) in tensors) AssertSameTensor(tensor, loaded[name]);
        Assert.Empty(loaded["scalar"].shape);
        DisposeAll(loaded);
    }

    [Fact]
    public void MetadataRoundTripsAndWriterPadsHeaderToEightBytes()
    {
        using var t = torch.ones(5, dtype: torch.int8);
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode \"quoted\" + <tags>", ["empty"] = "" };
        var path = _temp.File("meta.safetensors");

        SafeTensors.Save(path, [new("t", t)], metadata);
        var header = SafeTensors.ReadHeader(path);

        Assert.Equal(metadata, header.Metadata);
        Assert.Equal(0, header.DataStart % 8);
        Assert.Equal(header.DataStart, 8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(File.ReadAllBytes(path).AsSpan(0, 8)));
    }

    [Fact]
    public void EntriesKeepInsertionOrderAndPackOffsetsInThatOrder()
    {
        using var b = torch.zeros(3, dtype: torch.float64);
        using var a = torch.zeros(2, dtype: torch.int16);
        using var c = torch.zeros(1, dtype: torch.@bool);
        var path = _temp.File("order.safetensors");

        SafeTensors.Save(path, [new("b", b), new("a", a), new("c", c)]);
        var header = SafeTensors.ReadHeader(path);

        Assert.Equal(["b", "a", "c"], header.Entries.Select(e => e.Name));
        Assert.Equal([(0L, 24L), (24L, 28L), (28L, 29L)], header.Entries.Select(e => (e.Begin, e.End)));
        Assert.Equal(["b", "a", "c"], SafeTensors.Load(path).Keys);
    }

    [Fact]
    public void LoadTensorReadsOneTensorAndNamesAMissingOne()
    {
        using var x = torch.arange(4, dtype: torch.int32);
        using var y = torch.arange(6, dtype: torch.float32).reshape(2, 3);
        var path = _temp.File("one.safetensors");
        SafeTensors.Save(path, [new("x", x), new("y", y)]);
        var header = SafeTensors.ReadHeader(path);

        using var loaded = SafeTensors.LoadTensor(path, header, "y");

        AssertSameTensor(y, loaded);
        var error = Assert.Throws<VarSharpException>(() => SafeTensors.LoadTensor(path, header, "z"));
        Assert.Contains("'z'", error.Message);
    }

    [Fact]
    public void SaveOverwritesAtomicallyAndLeavesNoTemporaryFiles()
    {
        using var first = torch.zeros(100);
        using var second = torch.ones(2);
        var path = _temp.File("model.safetensors");

        SafeTensors.Save(path, [new("w", first)]);
        SafeTensors.Save(path, [new("w", second)]);

        Assert.Equal([path], Directory.GetFiles(_temp.Path));
        using var loaded = SafeTensors.Load(path)["w"];
        AssertSameTensor(second, loaded);
    }

    [Fact]
    public void SaveRejectsDuplicateAndReservedNamesWithoutWritingAFile()
    {
        using var t = torch.zeros(1);
        var path = _temp.File("bad.safetensors");

        var duplicate = Assert.Throws<SafeTensorsException>(() => SafeTensors.Save(path, [new("w", t), new("w", t)]));
        var reserved = Assert.Throws<SafeTensorsException>(() => SafeTensors.Save(path, [new("__metadata__", t)]));

        Assert.Equal(SafeTensorsRule.DuplicateName, duplicate.Rule);
        Assert.Equal(SafeTensorsRule.BadEntry, reserved.Rule);
        Assert.Empty(Directory.GetFiles(_temp.Path));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(12)]
    [InlineData(1 << 20)]
    public void ChunkedCopiesReachEveryByte(int chunkBytes)
    {
        using var original = torch.arange(1000, dtype: torch.float32);
        using var stream = new MemoryStream();
        TensorBytes.WriteFrom(original, stream, chunkBytes);
        Assert.Equal(4000, stream.Length);

        using var copy = torch.empty(1000, dtype: torch.float32);
        stream.Position = 0;
        TensorBytes.ReadInto(copy, stream, chunkBytes);

        AssertSameTensor(original, copy);
    }

    private static torch.Tensor SampleTensor(string dtype, long[] shape)
    {
        using var normal = torch.randn(shape, generator: torch.manual_seed(7));
        using var ints = torch.arange(shape.Aggregate(1L, (a, b) => a * b)).reshape(shape);
        return dtype switch
        {
            "F64" => normal.to(torch.float64),
            "F32" => WithNegativeInfinity(normal),
            "F16" => normal.to(torch.float16),
            "BF16" => normal.to(torch.bfloat16),
            "I64" => ints.mul(long.MaxValue / 8).to(torch.int64),
            "I32" => ints.mul(-300_000_000).to(torch.int32),
            "I16" => ints.mul(-6000).to(torch.int16),
            "I8" => ints.mul(-25).to(torch.int8),
            "U8" => ints.mul(50).to(torch.uint8),
            "BOOL" => ints.remainder(2).to(torch.@bool),
            "C64" => torch.complex(normal, normal.neg()),
            _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
        };
    }

    // Golden weights hold -inf (attention masks), so the float path must keep it bit-exact.
    private static torch.Tensor WithNegativeInfinity(torch.Tensor source)
    {
        var copy = source.clone();
        using var inf = torch.tensor(float.NegativeInfinity);
        copy[0, 0] = inf;
        return copy;
    }

    internal static void AssertSameTensor(torch.Tensor expected, torch.Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        using var scope = torch.NewDisposeScope();
        var e = expected.contiguous();
        var a = actual.contiguous();
        Assert.Equal(e.bytes.ToArray(), a.bytes.ToArray());
    }

    private static void DisposeAll(Dictionary<string, torch.Tensor> tensors)
    {
        foreach (var t in tensors.Values) t.Dispose();
    }
}
