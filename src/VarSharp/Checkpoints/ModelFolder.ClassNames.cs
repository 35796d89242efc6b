using System.Text.Json;
using VarSharp.Config;
using VarSharp.Data;

namespace VarSharp.Checkpoints;

public static partial class ModelFolder
{
    /// <summary>
    /// The display names of a model's <paramref name="numClasses"/> classes, from its config file: a `classes` array of
    /// strings at the top level or in the `var` block (exactly one name per class). Without one, a config whose
    /// `dataset` names Fashion-MNIST with ten classes gets <see cref="FashionMnist.ClassNames"/>; anything else gets
    /// "class 0", "class 1", ….
    /// </summary>
    public static IReadOnlyList<string> ReadClassNames(string configPath, int numClasses)
    {
        using var doc = JsonConfig.ParseFile(configPath);
        return ReadClassNames(doc.RootElement, configPath, numClasses);
    }

    /// <summary><see cref="ReadClassNames(string, int)"/> on a parsed config (<paramref name="configPath"/> names it in errors).</summary>
    public static IReadOnlyList<string> ReadClassNames(JsonElement root, string configPath, int numClasses)
    {
        if (numClasses <= 0) throw new VarSharpException($"a model needs at least one class, found {numClasses}.");
        if (root.ValueKind == JsonValueKind.Object)
        {
            if (root.TryGetProperty("classes", out var top)) return Names(top, configPath, "classes", numClasses);
            if (root.TryGetProperty("var", out var varBlock) && varBlock.ValueKind == JsonValueKind.Object
                && varBlock.TryGetProperty("classes", out var inVar))
                return Names(inVar, configPath, "var.classes", numClasses);
            if (numClasses == FashionMnist.ClassNames.Count && root.TryGetProperty("dataset", out var ds)
                && ds.ValueKind == JsonValueKind.String && IsFashionMnist(ds.GetString()!))
                return FashionMnist.ClassNames;
        }
        return Enumerable.Range(0, numClasses).Select(i => $"class {i}").ToArray();
    }

    private static bool IsFashionMnist(string name) =>
        string.Equals(new string(name.Where(char.IsLetterOrDigit).ToArray()), "fashionmnist", StringComparison.OrdinalIgnoreCase);

    private static string[] Names(JsonElement array, string configPath, string key, int numClasses)
    {
        if (array.ValueKind != JsonValueKind.Array || array.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
            throw new VarSharpException($"Config file {configPath}: '{key}' must be an array of class names (strings).");
        var names = array.EnumerateArray().Select(e => e.GetString()!).ToArray();
        if (names.Length != numClasses)
            throw new VarSharpException($"Config file {configPath}: '{key}' names {names.Length} classes but the model has {numClasses}.");
        return names;
    }
}
