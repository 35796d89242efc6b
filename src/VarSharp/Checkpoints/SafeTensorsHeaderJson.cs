using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace VarSharp.Checkpoints;

/// <summary>
/// Turns the header's JSON bytes into entries and metadata, checking every shape and type on the way. Offsets are only
/// parsed here; whether they fit the buffer is <see cref="SafeTensorsLayout"/>'s job.
/// </summary>
/// <remarks>
/// Uses <see cref="Utf8JsonReader"/> rather than JsonDocument because JsonDocument silently accepts duplicate names,
/// and a duplicate tensor name would let two readers of the same file disagree about its content.
/// </remarks>
internal static class SafeTensorsHeaderJson
{
    public const string MetadataKey = "__metadata__";

    /// <summary>The most dimensions a tensor may have (as in PyTorch); the torch checkpoint reader uses the same cap.</summary>
    public const int MaxRank = 64;

    private static readonly JsonReaderOptions Options = new() { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 16 };

    public static (List<SafeTensorEntry> Entries, Dictionary<string, string> Metadata) Parse(byte[] json, string file)
    {
        CheckWellFormed(json, file);
        var reader = new Utf8JsonReader(json, Options);
        reader.Read();
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Fail(SafeTensorsRule.HeaderNotObject, file, $"expected the header to be a JSON object but found {Describe(reader.TokenType)}");

        var entries = new List<SafeTensorEntry>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var name = reader.GetString()!;
            if (!seen.Add(name))
                throw Fail(SafeTensorsRule.DuplicateName, file, $"expected each header name once but '{name}' appears more than once");
            reader.Read();
            if (name == MetadataKey) ReadMetadata(ref reader, metadata, file);
            else entries.Add(ReadEntry(ref reader, name, file));
        }
        return (entries, metadata);
    }

    // Settling syntax first means a truncated or garbled header is reported as such, not as whatever entry it broke.
    private static void CheckWellFormed(byte[] json, string file)
    {
        if (!Utf8.IsValid(json))
            throw Fail(SafeTensorsRule.HeaderNotJson, file, $"expected a UTF-8 JSON header but its {json.Length} bytes are not valid UTF-8");
        try
        {
            var reader = new Utf8JsonReader(json, Options);
            while (reader.Read())
            {
                // An escaped unpaired surrogate ("\ud800") passes the reader and valid UTF-8 but cannot become a string.
                if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName && !Decodes(ref reader))
                    throw Fail(SafeTensorsRule.HeaderNotJson, file,
                        $"expected the header's strings to be valid UTF-16 but the one at byte {reader.TokenStartIndex} holds an unpaired surrogate escape");
            }
            if (reader.BytesConsumed == 0)
                throw Fail(SafeTensorsRule.HeaderNotJson, file, $"expected a JSON header but its {json.Length} bytes hold no JSON value");
        }
        catch (JsonException e)
        {
            var where = e.LineNumber is > 0 ? $"line {e.LineNumber + 1}, byte {e.BytePositionInLine}" : $"byte {e.BytePositionInLine}";
            throw new SafeTensorsException(SafeTensorsRule.HeaderNotJson,
                $"{file}: expected the {json.Length}-byte header to be valid JSON but parsing failed at {where}.", e);
        }
    }

    private static bool Decodes(ref Utf8JsonReader reader)
    {
        try
        {
            reader.GetString();
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    // The reference library treats a null __metadata__ as absent, so null is accepted here too.
    private static void ReadMetadata(ref Utf8JsonReader reader, Dictionary<string, string> metadata, string file)
    {
        if (reader.TokenType == JsonTokenType.Null) return;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Fail(SafeTensorsRule.BadMetadata, file, $"expected {MetadataKey} to be an object of strings but found {Describe(reader.TokenType)}");
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var key = reader.GetString()!;
            reader.Read();
            if (reader.TokenType != JsonTokenType.String)
                throw Fail(SafeTensorsRule.BadMetadata, file, $"expected metadata value '{key}' to be a string but found {Describe(reader.TokenType)}");
            if (!metadata.TryAdd(key, reader.GetString()!))
                throw Fail(SafeTensorsRule.BadMetadata, file, $"expected each metadata key once but '{key}' appears more than once");
        }
    }

    private static SafeTensorEntry ReadEntry(ref Utf8JsonReader reader, string name, string file)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Fail(SafeTensorsRule.BadEntry, file, $"expected tensor '{name}' to be an object with dtype, shape and data_offsets but found {Describe(reader.TokenType)}");

        string? dtype = null;
        long[]? shape = null;
        long[]? offsets = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var key = reader.GetString()!;
            reader.Read();
            switch (key)
            {
                case "dtype" when dtype is null:
                    if (reader.TokenType != JsonTokenType.String)
                        throw Fail(SafeTensorsRule.BadEntry, file, $"expected tensor '{name}' dtype to be a string but found {Describe(reader.TokenType)}");
                    dtype = reader.GetString()!;
                    break;
                case "shape" when shape is null:
                    shape = ReadShape(ref reader, name, file);
                    break;
                case "data_offsets" when offsets is null:
                    offsets = ReadOffsets(ref reader, name, file);
                    break;
                case "dtype" or "shape" or "data_offsets":
                    throw Fail(SafeTensorsRule.BadEntry, file, $"expected tensor '{name}' to give {key} once but it appears more than once");
                default:
                    throw Fail(SafeTensorsRule.BadEntry, file, $"expected tensor '{name}' to have only dtype, shape and data_offsets but found key '{key}'");
            }
        }

        if (dtype is null || shape is null || offsets is null)
        {
            var missing = new[] { ("dtype", dtype is null), ("shape", shape is null), ("data_offsets", offsets is null) }
                .Where(m => m.Item2).Select(m => m.Item1);
            throw Fail(SafeTensorsRule.BadEntry, file, $"expected tensor '{name}' to have dtype, shape and data_offsets but it lacks {string.Join(" and ", missing)}");
        }
        if (!SafeTensorDTypes.TryGet(dtype, out _, out var elementSize))
            throw Fail(SafeTensorsRule.UnknownDType, file, $"expected tensor '{name}' dtype to be one of {SafeTensorDTypes.KnownList} but found '{dtype}'");
        CheckByteSizeFits(shape, elementSize, name, file);
        return new SafeTensorEntry(name, dtype, shape, offsets[0], offsets[1]);
    }

    private static long[] ReadShape(ref Utf8JsonReader reader, string name, string file)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw Fail(SafeTensorsRule.BadEntry, file, $"expected tensor '{name}' shape to be an array but found {Describe(reader.TokenType)}");
        var dims = new List<long>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number)
                throw Fail(SafeTensorsRule.BadEntry, file, $"expected tensor '{name}' shape to hold numbers but found {Describe(reader.TokenType)}");
            if (!reader.TryGetInt64(out var dim) || dim < 0)
                throw Fail(SafeTensorsRule.BadShape, file, $"expected tensor '{name}' shape dimensions to be non-negative integers but found {RawNumber(ref reader)}");
            // Without a cap, a header of "1," repeated would make shape arrays far larger than the file justifies.
            if (dims.Count == MaxRank)
                throw Fail(SafeTensorsRule.BadShape, file, $"expected tensor '{name}' to have at most {MaxRank} dimensions, PyTorch's limit, but its shape has more");
            dims.Add(dim);
        }
        return [.. dims];
    }

    private static long[] ReadOffsets(ref Utf8JsonReader reader, string name, string file)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw Fail(SafeTensorsRule.BadEntry, file, $"expected tensor '{name}' data_offsets to be an array but found {Describe(reader.TokenType)}");
        var values = new List<long>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number)
                throw Fail(SafeTensorsRule.BadEntry, file, $"expected tensor '{name}' data_offsets to hold integers but found {Describe(reader.TokenType)}");
            if (reader.TryGetInt64(out var value))
                values.Add(value);
            else if (reader.TryGetUInt64(out _))
                throw Fail(SafeTensorsRule.OffsetsOutOfBounds, file, $"expected tensor '{name}' data_offsets to fit in 63 bits but found {RawNumber(ref reader)}");
            else
                throw Fail(SafeTensorsRule.BadEntry, file, $"expected tensor '{name}' data_offsets to hold integers but found {RawNumber(ref reader)}");
        }
        if (values.Count != 2)
            throw Fail(SafeTensorsRule.BadEntry, file, $"expected tensor '{name}' data_offsets to hold 2 integers but found {values.Count}");
        return [.. values];
    }

    private static void CheckByteSizeFits(long[] shape, int elementSize, string name, string file)
    {
        try
        {
            long bytes = elementSize;
            foreach (var dim in shape) bytes = checked(bytes * dim);
        }
        catch (OverflowException)
        {
            throw Fail(SafeTensorsRule.BadShape, file, $"expected tensor '{name}' shape [{string.Join(", ", shape)}] to describe fewer than 2^63 bytes but its size overflows");
        }
    }

    private static string RawNumber(ref Utf8JsonReader reader) => Encoding.UTF8.GetString(reader.ValueSpan);

    private static string Describe(JsonTokenType token) => token switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => token.ToString(),
    };

    internal static SafeTensorsException Fail(SafeTensorsRule rule, string file, string text) => new(rule, $"{file}: {text}.");
}
