using TorchSharp;
using VarSharp.Checkpoints.Torch;
using static TorchSharp.torch;

namespace VarSharp.Tests.Checkpoints.Torch;

/// <summary>Hand-built checkpoints that each break (or exercise) one rule of the reader.</summary>
public class CraftedCheckpointTests
{
    private static readonly byte[] Sixteen = TorchZipBuilder.Floats([.. Enumerable.Range(0, 16).Select(i => (float)i)]);

    private static Dictionary<string, Tensor> Load(byte[] file) => TorchCheckpoint.Load(new MemoryStream(file), "crafted.pth");

    private static TorchCheckpointException Refused(byte[] file, TorchCheckpointReason reason, string? detail = null)
    {
        var e = Assert.Throws<TorchCheckpointException>(() => MaliciousCheckpointTests.DisposeAll(Load(file)));
        Assert.Equal(reason, e.Reason);
        if (detail is not null) Assert.Contains(detail, e.Message, StringComparison.Ordinal);
        Assert.StartsWith("crafted.pth: ", e.Message, StringComparison.Ordinal);
        return e;
    }

    private static byte[] WithTensor(long offset, long[] size, long[] stride, long numel = 16, byte[]? data = null, string storage = "FloatStorage") =>
        TorchZipBuilder.Checkpoint(PickleBuilder.StateDict(("w", p => p.Tensor("0", numel, offset, size, stride, storage))), ("0", data ?? Sixteen)).Build();

    [Fact]
    public void AWellFormedCheckpointLoadsWithViewsMaterialised()
    {
        var pickle = PickleBuilder.StateDict(
            ("whole", p => p.Tensor("0", 16, 0, [4, 4], [4, 1])),
            ("transposed", p => p.Tensor("0", 16, 0, [4, 4], [1, 4])),
            ("tail", p => p.Tensor("0", 16, 12, [4], [1])));
        var tensors = Load(TorchZipBuilder.Checkpoint(pickle, ("0", Sixteen)).Build());
        try
        {
            Assert.Equal(["whole", "transposed", "tail"], tensors.Keys);
            Assert.All(tensors.Values, t => Assert.True(t.is_contiguous()));
            Assert.Equal(4f, tensors["transposed"][0, 1].item<float>());
            Assert.Equal(13f, tensors["tail"][1].item<float>());
            // Materialised views are independent copies of the shared storage.
            tensors["whole"].fill_(-1);
            Assert.Equal(13f, tensors["tail"][1].item<float>());
        }
        finally
        {
            MaliciousCheckpointTests.DisposeAll(tensors);
        }
    }

    [Fact]
    public void Zip64FieldsEverywhereReadTheSameAsClassicOnes()
    {
        var pickle = PickleBuilder.StateDict(("w", p => p.Tensor("0", 16, 0, [16], [1])));
        var classic = Load(TorchZipBuilder.Checkpoint(pickle, ("0", Sixteen)).Build());
        var zip64 = Load(new TorchZipBuilder { Zip64Everywhere = true }.Add("archive/data.pkl", pickle).Add("archive/data/0", Sixteen).Build());
        try
        {
            Assert.True(classic["w"].bytes.SequenceEqual(zip64["w"].bytes));
        }
        finally
        {
            MaliciousCheckpointTests.DisposeAll(classic);
            MaliciousCheckpointTests.DisposeAll(zip64);
        }
    }

    /// <summary>One-byte opcodes that each make a value: without a budget, memory grows by ~100 bytes per pickle byte.</summary>
    [Theory]
    [InlineData((byte)'}')]   // EMPTY_DICT
    [InlineData((byte)0x94)]  // MEMOIZE of the same dict, again and again
    public void APickleThatMakesMoreValuesThanAnyStateDictIsRefused(byte op)
    {
        var pickle = new byte[3 + RestrictedUnpickler.MaxValues + 1];
        (pickle[0], pickle[1], pickle[2]) = (0x80, 2, (byte)'}');
        pickle.AsSpan(3).Fill(op);
        var zip = new TorchZipBuilder().Add("archive/data.pkl", pickle).Build();
        Refused(zip, TorchCheckpointReason.ResourceLimit, $"more than the {RestrictedUnpickler.MaxValues} values");
    }

    [Theory]
    [InlineData(0xFFFFFFFFFFFFFFFF)]   // −1 as a long: a negative list capacity
    [InlineData(0x800000007FFFFFC7)]   // 0x7FFFFFC7 as an int: a 16 GiB list
    public void AZip64EntryCountBeyondTheFileIsRefused(ulong count)
    {
        var zip = new TorchZipBuilder { Zip64Everywhere = true }.Add("archive/data.pkl", PickleBuilder.StateDict()).Build();
        int z64 = zip.AsSpan().LastIndexOf("PK\x06\x06"u8);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(zip.AsSpan(z64 + 24), count);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(zip.AsSpan(z64 + 32), count);
        Refused(zip, TorchCheckpointReason.ZipCorrupt, "zip64 end record declares entry counts or directory bounds outside the file");
    }

    [Theory]
    [InlineData(0, new long[] { 4, 4 }, new long[] { 4, -1 }, TorchCheckpointReason.BadTensorGeometry, "non-negative")]
    [InlineData(-1, new long[] { 4 }, new long[] { 1 }, TorchCheckpointReason.BadTensorGeometry, "non-negative")]
    [InlineData(0, new long[] { 4, 4 }, new long[] { 4 }, TorchCheckpointReason.BadTensorGeometry, "differ in length")]
    [InlineData(0, new long[] { 17 }, new long[] { 1 }, TorchCheckpointReason.TensorOutOfBounds, "element 16")]
    [InlineData(17, new long[] { 0 }, new long[] { 1 }, TorchCheckpointReason.TensorOutOfBounds, null)]
    [InlineData(0, new long[] { 1000, 1000 }, new long[] { 0, 0 }, TorchCheckpointReason.ResourceLimit, "1000000 elements")]
    [InlineData(0, new long[] { 4611686018427387904, 4 }, new long[] { 0, 1 }, TorchCheckpointReason.SizeOverflow, null)]
    [InlineData(1, new long[] { 2, 4611686018427387904 }, new long[] { 4611686018427387904, 0 }, TorchCheckpointReason.SizeOverflow, null)]
    public void TensorGeometryIsCheckedBeforeAnythingIsAllocated(long offset, long[] size, long[] stride, TorchCheckpointReason reason, string? detail) =>
        Refused(WithTensor(offset, size, stride), reason, detail);

    [Fact]
    public void MoreThan64DimensionsAreRefused() =>
        Refused(WithTensor(0, [.. Enumerable.Repeat(1L, 65)], [.. Enumerable.Repeat(1L, 65)]), TorchCheckpointReason.BadTensorGeometry, "65 dimensions");

    [Fact]
    public void StorageRecordsMustMatchTheirDeclaredSizeAndDtype()
    {
        Refused(WithTensor(0, [16], [1], numel: 17), TorchCheckpointReason.RecordSizeMismatch, "68 bytes");
        Refused(WithTensor(0, [16], [1], storage: "DoubleStorage", numel: 16, data: Sixteen), TorchCheckpointReason.RecordSizeMismatch, "128 bytes");
        Refused(WithTensor(0, [16], [1], numel: long.MaxValue / 2), TorchCheckpointReason.SizeOverflow);
        Refused(WithTensor(0, [2], [1], storage: "BoolStorage", numel: 2, data: [1, 2]), TorchCheckpointReason.BadTensorData, "byte 2");
        Refused(WithTensor(0, [4], [1], storage: "ComplexFloatStorage"), TorchCheckpointReason.ForbiddenGlobal, "torch.ComplexFloatStorage");
    }

    [Fact]
    public void ManyCopiedViewsOfOneStorageCannotExpandTheFile()
    {
        // One transposed view memoised and reused under 4000 keys: each copy is 64 bytes, a few pickle bytes each.
        var entries = Enumerable.Range(0, 4000).Select(i => ($"v{i}", i == 0
            ? (Action<PickleBuilder>)(p => p.Tensor("0", 16, 0, [4, 4], [1, 4]).Op('q').Byte(1))
            : p => p.Op('h').Byte(1))).ToArray();
        Refused(TorchZipBuilder.Checkpoint(PickleBuilder.StateDict(entries), ("0", Sixteen)).Build(), TorchCheckpointReason.ResourceLimit, "copied memory");
    }

    [Fact]
    public void OnlyStateDictShapesOfPickleAreAccepted()
    {
        // A nested dict value, a REDUCE on a storage type, BUILD on something other than the OrderedDict, a duplicate key.
        Refused(TorchZipBuilder.Checkpoint(PickleBuilder.StateDict(("nested", p => p.Op('}'))), ("0", Sixteen)).Build(),
            TorchCheckpointReason.NotAStateDict, "'nested' is a dict");
        Refused(TorchZipBuilder.Checkpoint(PickleBuilder.StateDict(("s", p => p.Global("torch", "FloatStorage").Op(')').Op('R'))), ("0", Sixteen)).Build(),
            TorchCheckpointReason.ForbiddenCall, "torch.FloatStorage");
        Refused(TorchZipBuilder.Checkpoint(PickleBuilder.StateDict(("t", p => p.Tensor("0", 16, 0, [16], [1]).Op('}').Op('b'))), ("0", Sixteen)).Build(),
            TorchCheckpointReason.ForbiddenCall, "BUILD");
        Refused(TorchZipBuilder.Checkpoint(PickleBuilder.StateDict(("a", p => p.Tensor("0", 16, 0, [16], [1])), ("a", p => p.Tensor("0", 16, 0, [16], [1]))), ("0", Sixteen)).Build(),
            TorchCheckpointReason.DuplicateKey, "'a'");
        Refused(TorchZipBuilder.Checkpoint(new PickleBuilder().Int(7).Op('.').ToArray()).Build(), TorchCheckpointReason.NotAStateDict, "an integer");
        var trailing = PickleBuilder.StateDict(("w", p => p.Tensor("0", 16, 0, [16], [1]))).Concat(new byte[] { (byte)'N' }).ToArray();
        Refused(TorchZipBuilder.Checkpoint(trailing, ("0", Sixteen)).Build(), TorchCheckpointReason.MalformedPickle, "after its STOP");
    }

    [Fact]
    public void DeeplyNestedPicklesDoNotOverflowTheStack()
    {
        // A million nested 1-tuples: describing or checking the value must not recurse.
        var p = new PickleBuilder().OrderedDict().Str("deep").Op('N');
        var nest = new byte[1_000_000];
        Array.Fill(nest, (byte)0x85);
        p.Raw(nest).Op('s').Op('.');
        Refused(TorchZipBuilder.Checkpoint(p.ToArray()).Build(), TorchCheckpointReason.NotAStateDict, "1-tuple");
    }

    [Fact]
    public void ContainerLevelProblemsAreRefused()
    {
        var pickle = PickleBuilder.StateDict(("w", p => p.Tensor("0", 16, 0, [16], [1])));
        Refused(TorchZipBuilder.Checkpoint(pickle).Build(), TorchCheckpointReason.MissingRecord, "archive/data/0");
        Refused(new TorchZipBuilder().Add("a/data.pkl", pickle).Add("b/data.pkl", pickle).Build(), TorchCheckpointReason.MissingRecord, "ambiguous");
        Refused(new TorchZipBuilder().Add("archive/x", [1]).Build(), TorchCheckpointReason.MissingRecord, "data.pkl");
        Refused(TorchZipBuilder.Checkpoint(pickle, ("0", Sixteen)).Add("archive/byteorder", "big"u8.ToArray()).Build(), TorchCheckpointReason.UnsupportedByteOrder, "'big'");
        Refused(TorchZipBuilder.Checkpoint(pickle, ("0", Sixteen)).Add("archive/data/0", Sixteen).Build(), TorchCheckpointReason.DuplicateEntry, "archive/data/0");
        Refused(TorchZipBuilder.Checkpoint(pickle, ("0", Sixteen)).Add("/etc/passwd", [1]).Build(), TorchCheckpointReason.UnsafeEntryName, "absolute");
        Refused(TorchZipBuilder.Checkpoint(pickle, ("0", Sixteen)).Add("archive\\..\\x", [1]).Build(), TorchCheckpointReason.UnsafeEntryName, "backslash");
        Refused(new byte[] { 1, 2, 3, 4, 5 }, TorchCheckpointReason.NotACheckpoint);
        Refused([], TorchCheckpointReason.NotACheckpoint);

        var ok = TorchZipBuilder.Checkpoint(pickle, ("0", Sixteen)).Add("archive/byteorder", "little"u8.ToArray()).Build();
        MaliciousCheckpointTests.DisposeAll(Load(ok));
    }

    [Fact]
    public void AStorageWhoseBytesDoNotMatchItsCrcIsRefused()
    {
        // m07 of the shared set flips a padding byte (refused as ZipCorrupt); this flips a byte of the tensor data itself,
        // which only the CRC-32 check can notice: the sizes, offsets and pickle are all still consistent.
        var pickle = PickleBuilder.StateDict(("w", p => p.Tensor("0", 16, 0, [16], [1])));
        var file = TorchZipBuilder.Checkpoint(pickle, ("0", Sixteen)).Build();
        MaliciousCheckpointTests.DisposeAll(Load(file));
        var record = new Fuzz.ZipLayout(file).Records.Single();
        file[record.DataOffset + 5] ^= 0x40;
        Refused(file, TorchCheckpointReason.CrcMismatch, "CRC-32");
    }

    [Fact]
    public void ADirectoryOfOverlappingHeadersIsRefusedWithoutReadingThemAll()
    {
        // Point every central entry at the same local header: each must end before the next entry starts.
        var file = new TorchZipBuilder().Add("archive/data.pkl", [(byte)'.']).Add("archive/data/0", Sixteen).Build();
        var layout = new Fuzz.ZipLayout(file);
        var second = layout.Entries[1];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(second.CentralOffset + 42), (uint)layout.Entries[0].LocalOffset);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Refused(file, TorchCheckpointReason.ZipCorrupt, "overlapping");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
    }
}
