using System.Text.Json;
using System.Text.Json.Serialization;

namespace VarSharp.Config;

/// <summary>JSON conventions shared by every config record: snake_case names, as in the reference's config.json.</summary>
public static class JsonConfig
{
    public static JsonSerializerOptions Options { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip,
    };

    public static T Deserialize<T>(JsonElement element, string what)
    {
        try
        {
            return element.Deserialize<T>(Options) ?? throw new VarSharpException($"The {what} block is null; expected a JSON object.");
        }
        catch (JsonException e)
        {
            throw new VarSharpException($"The {what} block is not valid: {e.Message}", e);
        }
    }

    /// <summary>
    /// Top-level properties whose JSON differs between two objects, in <paramref name="ours"/>' order, with values
    /// compacted (no whitespace) for one-sentence error messages; a property missing from theirs reads "(absent)".
    /// </summary>
    public static List<(string Name, string Ours, string Theirs)> Differences(JsonElement ours, JsonElement theirs)
    {
        var result = new List<(string, string, string)>();
        foreach (var p in ours.EnumerateObject())
        {
            var other = theirs.TryGetProperty(p.Name, out var v) ? v.GetRawText() : "(absent)";
            if (p.Value.GetRawText() != other) result.Add((p.Name, Compact(p.Value.GetRawText()), Compact(other)));
        }
        return result;
    }

    /// <summary>Differences of two config records serialised with <paramref name="options"/> (default: <see cref="Options"/>).</summary>
    public static List<(string Name, string Ours, string Theirs)> Differences<T>(T ours, T theirs, JsonSerializerOptions? options = null) =>
        Differences(JsonSerializer.SerializeToElement(ours, options ?? Options), JsonSerializer.SerializeToElement(theirs, options ?? Options));

    private static string Compact(string json) => string.Concat(json.Where(c => !char.IsWhiteSpace(c)));

    /// <summary>
    /// Parses JSON that came from outside, refusing (with <see cref="JsonException"/>, like any other syntax error) a
    /// string or name whose escapes are not valid UTF-16: JsonDocument accepts an unpaired surrogate such as "\ud800"
    /// and only reading that string later throws, with an InvalidOperationException no caller expects.
    /// </summary>
    public static JsonDocument ParseUntrusted(byte[] bytes, JsonDocumentOptions options = default)
    {
        var doc = JsonDocument.Parse(bytes, options);
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions
        {
            MaxDepth = options.MaxDepth, CommentHandling = options.CommentHandling, AllowTrailingCommas = options.AllowTrailingCommas,
        });
        while (reader.Read())
        {
            if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.PropertyName)) continue;
            try
            {
                reader.GetString();
            }
            catch (InvalidOperationException)
            {
                doc.Dispose();
                throw new JsonException($"The string at byte {reader.TokenStartIndex} holds an escape that is not valid UTF-16 (an unpaired surrogate).");
            }
        }
        return doc;
    }

    public static JsonDocument ParseFile(string path) => Parse(ReadFile(path), path);

    /// <summary>A config file's bytes, with a one-sentence error when it is missing.</summary>
    public static byte[] ReadFile(string path)
    {
        if (!File.Exists(path)) throw PathErrors.FileMissing(path, "Config file");
        return File.ReadAllBytes(path);
    }

    /// <summary>Parses config bytes read from <paramref name="path"/> (named in the error).</summary>
    public static JsonDocument Parse(byte[] bytes, string path)
    {
        try
        {
            return ParseUntrusted(bytes);
        }
        catch (JsonException e)
        {
            throw new VarSharpException($"Config file {path} is not valid JSON: {e.Message}", e);
        }
    }
}
