using System.Text.Json;
using VarSharp.Config;
using VarSharp.Sampling;

namespace VarSharp.Checkpoints;

public static partial class ModelFolder
{
    /// <summary>
    /// The model's recommended sampling settings from the optional `sampling` block of <paramref name="configPath"/>;
    /// <see cref="SamplingDefaults.Reference"/> where the block or a field is absent. A field of the wrong type or out of
    /// range is a one-sentence <see cref="VarSharpException"/>.
    /// </summary>
    public static SamplingDefaults ReadSamplingDefaults(string configPath, int vocabSize)
    {
        using var doc = JsonConfig.ParseFile(configPath);
        var root = doc.RootElement;
        var d = SamplingDefaults.Reference;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("sampling", out var block)) return d;
        if (block.ValueKind != JsonValueKind.Object)
            throw new VarSharpException($"Config file {configPath}: 'sampling' must be an object like {{\"cfg\": 1.5}}.");
        foreach (var field in block.EnumerateObject())
        {
            switch (field.Name)
            {
                case "cfg":
                    double cfg = Number(field, configPath);
                    if (!(cfg >= 0) || double.IsInfinity(cfg))
                        throw new VarSharpException($"Config file {configPath}: sampling.cfg must be a finite number ≥ 0, found {cfg}.");
                    d = d with { Cfg = cfg };
                    break;
                case "top_k":
                    if (field.Value.ValueKind != JsonValueKind.Number || !field.Value.TryGetInt32(out int k) || k < 0 || k > vocabSize)
                        throw new VarSharpException($"Config file {configPath}: sampling.top_k must be an integer from 0 (off) to the vocabulary size {vocabSize}.");
                    d = d with { TopK = k };
                    break;
                case "top_p":
                    double p = Number(field, configPath);
                    if (!(p >= 0 && p <= 1))
                        throw new VarSharpException($"Config file {configPath}: sampling.top_p must be in [0, 1], found {p}.");
                    d = d with { TopP = p };
                    break;
                default:
                    throw new VarSharpException($"Config file {configPath}: sampling.{field.Name} is not a sampling setting (cfg, top_k, top_p).");
            }
        }
        return d;
    }

    private static double Number(JsonProperty field, string configPath) =>
        field.Value.ValueKind == JsonValueKind.Number
            ? field.Value.GetDouble()
            : throw new VarSharpException($"Config file {configPath}: sampling.{field.Name} must be a number.");
}
