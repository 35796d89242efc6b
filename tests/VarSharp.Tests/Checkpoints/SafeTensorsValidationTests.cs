using VarSharp.Checkpoints;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Checkpoints;

/// <summary>One crafted file per broken rule; each must be refused with that rule before any tensor is read.</summary>
public class SafeTensorsValidationTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void FileShorterThanTheLengthField()
    {
        var path = _temp.File("short.safetensors");
        File.WriteAllBytes(path, [1, 2, 3, 4, 5]);
        AssertRefused(path, SafeTensorsRule.HeaderTooShort, "5");
    }

    [Fact]
    public void HeaderLengthAboveTheCap() =>
        AssertRefused(Raw("{}", 0, headerLengthField: 100_000_001), SafeTensorsRule.HeaderTooLarge, "100000001");

    [Fact]
    public void HeaderLengthBeyondTheEndOfTheFile() =>
        AssertRefused(Raw("{}", 0, headerLengthField: 50), SafeTensorsRule.HeaderTooLarge, "50");

    [Theory]
    [InlineData("""{"a": {"dtype": "F32", """)]
    [InlineData("""{"a": 1,}""")]
    [InlineData("""{} {}""")]
    [InlineData("""   """)]
    [InlineData("""{"\ud800": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}""")]      // unpaired surrogate: no string
    [InlineData("""{"__metadata__": {"k": "\udc00"}}""")]
    public void HeaderThatIsNotJson(string json) => AssertRefused(Raw(json, 0), SafeTensorsRule.HeaderNotJson);

    [Fact]
    public void BoolTensorWithAByteOtherThanZeroOrOne()
    {
        var header = """{"m":{"dtype":"BOOL","shape":[4],"data_offsets":[0,4]}}"""u8.ToArray();
        var bad = RawSafeTensorsFile.Write(_temp.File("bad-bool.safetensors"), header, [0, 1, 2, 1]);
        SafeTensors.ReadHeader(bad);   // the header is fine; the data is not
        foreach (var load in new Action[] { () => SafeTensors.Load(bad), () => SafeTensors.LoadHashed(bad, _ => true) })
        {
            var e = Assert.Throws<SafeTensorsException>(load);
            Assert.Equal(SafeTensorsRule.BadBool, e.Rule);
            Assert.Equal($"{bad}: expected BOOL tensor 'm' to hold bytes 0 and 1 but element 2 is 2.", e.Message);
        }
        var good = RawSafeTensorsFile.Write(_temp.File("good-bool.safetensors"), header, [0, 1, 1, 0]);
        var loaded = SafeTensors.Load(good);
        using var m = loaded["m"];
        Assert.Equal(new[] { false, true, true, false }, m.data<bool>().ToArray());
    }

    [Fact]
    public void HeaderThatIsNotUtf8()
    {
        var path = RawSafeTensorsFile.Write(_temp.File("latin1.safetensors"), [(byte)'{', (byte)'"', 0xFF, (byte)'"', (byte)':', (byte)'1', (byte)'}'], []);
        AssertRefused(path, SafeTensorsRule.HeaderNotJson, "UTF-8");
    }

    [Theory]
    [InlineData("""[1, 2]""")]
    [InlineData("""  "text" """)]
    [InlineData("""null""")]
    public void HeaderThatIsNotAnObject(string json) => AssertRefused(Raw(json, 0), SafeTensorsRule.HeaderNotObject);

    [Theory]
    [InlineData("""{"w": 5}""")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [1]}}""")]
    [InlineData("""{"w": {"dtype": 1, "shape": [1], "data_offsets": [0, 4]}}""")]
    [InlineData("""{"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}}""")]
    [InlineData("""{"w": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}}""")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}""")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.5]}}""")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "extra": 1}}""")]
    [InlineData("""{"w": {"dtype": "F32", "dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""")]
    public void EntryWithWrongKeysOrTypes(string json) => AssertRefused(Raw(json, 4), SafeTensorsRule.BadEntry, "'w'");

    [Fact]
    public void UnknownDType() =>
        AssertRefused(Raw("""{"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}""", 16), SafeTensorsRule.UnknownDType, "F128");

    [Theory]
    [InlineData("""{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}""", "-1")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 0]}}""", "2.5")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]}}""", "overflows")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [99999999999999999999], "data_offsets": [0, 0]}}""", "99999999999999999999")]
    public void BadShape(string json, string detail) => AssertRefused(Raw(json, 0), SafeTensorsRule.BadShape, detail);

    [Fact]
    public void ShapeWithMoreThan64Dimensions() =>
        AssertRefused(Raw("{\"w\": {\"dtype\": \"F32\", \"shape\": [" + string.Concat(Enumerable.Repeat("1, ", 64)) + "1], \"data_offsets\": [0, 4]}}", 4),
            SafeTensorsRule.BadShape, "at most 64 dimensions");

    [Theory]
    [InlineData("""{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 100]}}""", "[0, 100]")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}""", "[8, 4]")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [0], "data_offsets": [-4, -4]}}""", "[-4, -4]")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 18446744073709551615]}}""", "18446744073709551615")]
    public void OffsetsOutsideTheBuffer(string json, string detail) =>
        AssertRefused(Raw(json, 16), SafeTensorsRule.OffsetsOutOfBounds, detail);

    [Fact]
    public void SizeThatDisagreesWithShape() =>
        AssertRefused(Raw("""{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}""", 12), SafeTensorsRule.SizeMismatch, "16");

    [Fact]
    public void OverlappingTensors() =>
        AssertRefused(Raw("""
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
            """, 12), SafeTensorsRule.Overlap, "'w'");

    [Fact]
    public void ZeroSizedTensorInsideAnother() =>
        AssertRefused(Raw("""
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "w": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}}
            """, 8), SafeTensorsRule.Overlap, "'w'");

    [Fact]
    public void GapBetweenTensors() =>
        AssertRefused(Raw("""
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "w": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}
            """, 20), SafeTensorsRule.Gap, "'w'");

    [Fact]
    public void GapBeforeTheFirstTensor() =>
        AssertRefused(Raw("""{"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}""", 12), SafeTensorsRule.Gap, "'w'");

    [Fact]
    public void DuplicateTensorName() =>
        AssertRefused(Raw("""
            {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
             "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
            """, 8), SafeTensorsRule.DuplicateName, "'w'");

    [Fact]
    public void DuplicateNameSpelledWithAnEscape() =>
        AssertRefused(Raw("""
            {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
             "\u0077": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
            """, 8), SafeTensorsRule.DuplicateName, "'w'");

    [Theory]
    [InlineData("""{"__metadata__": {"k": 1}}""")]
    [InlineData("""{"__metadata__": ["k"]}""")]
    [InlineData("""{"__metadata__": {"k": {"nested": "v"}}}""")]
    [InlineData("""{"__metadata__": {"k": "a", "k": "b"}}""")]
    public void MetadataThatIsNotStringToString(string json) => AssertRefused(Raw(json, 0), SafeTensorsRule.BadMetadata);

    [Fact]
    public void BytesAfterTheLastTensor() =>
        AssertRefused(Raw("""{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}""", 12), SafeTensorsRule.TrailingBytes, "4");

    [Fact]
    public void BytesWithNoTensorsAtAll() => AssertRefused(Raw("{}", 3), SafeTensorsRule.TrailingBytes, "3");

    [Fact]
    public void MinimalValidFilesAreAccepted()
    {
        Assert.Empty(SafeTensors.ReadHeader(Raw("{}", 0)).Entries);
        Assert.Empty(SafeTensors.ReadHeader(Raw("""{"__metadata__": null}""", 0)).Metadata);
        var header = SafeTensors.ReadHeader(Raw("""
            {"b": {"dtype": "I8", "shape": [], "data_offsets": [4, 5]},
             "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [4, 4]},
             "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}   
            """, 5));
        Assert.Equal(["b", "e", "a"], header.Entries.Select(e => e.Name));
    }

    private string Raw(string json, int dataBytes, ulong? headerLengthField = null) =>
        RawSafeTensorsFile.Write(_temp.File($"{Guid.NewGuid():N}.safetensors"), json, dataBytes, headerLengthField);

    private static void AssertRefused(string path, SafeTensorsRule rule, string? detail = null)
    {
        var fromHeader = Assert.Throws<SafeTensorsException>(() => SafeTensors.ReadHeader(path));
        var fromLoad = Assert.Throws<SafeTensorsException>(() => SafeTensors.Load(path));

        Assert.Equal(rule, fromHeader.Rule);
        Assert.Equal(rule, fromLoad.Rule);
        Assert.StartsWith(path, fromHeader.Message);
        Assert.EndsWith(".", fromHeader.Message);
        Assert.Equal(1, fromHeader.Message.Count(c => c == '\n') + 1);
        if (detail is not null) Assert.Contains(detail, fromHeader.Message);
    }
}
