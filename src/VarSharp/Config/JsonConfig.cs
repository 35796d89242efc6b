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

    public static JsonDocument ParseFile(string path)
    {
        if (!File.Exists(path)) throw new VarSharpException($"Config file {path} does not exist.");
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new VarSharpException($"Config file {path} is not valid JSON: {e.Message}", e);
        }
    }
}
