using System.Text.Json;
using VarSharp.Config;
using VarSharp.Tokenizer;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints;

/// <summary>
/// A model folder: config.json (blocks `vqvae` and/or `var`) beside one safetensors file holding `vae.*` and/or
/// `var.*` keys (model.safetensors, or weights.safetensors as in the golden cases). The config alone rebuilds the
/// models; the weights must then match it exactly.
/// </summary>
public static partial class ModelFolder
{
    public static readonly string[] WeightFileNames = ["model.safetensors", "weights.safetensors"];

    public static string ConfigPath(string dir) => Path.Combine(dir, "config.json");

    public static string WeightsPath(string dir)
    {
        if (!Directory.Exists(dir)) throw PathErrors.FolderMissing(dir, "Model folder");
        foreach (var name in WeightFileNames)
        {
            var p = Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        throw new VarSharpException($"Model folder {dir} has no weights; expected one of {string.Join(", ", WeightFileNames)}.");
    }

    /// <summary>Reads the `vqvae` block of a config file.</summary>
    public static VqVaeConfig ReadVqVaeConfig(string configPath)
    {
        using var doc = JsonConfig.ParseFile(configPath);
        return ReadVqVaeConfig(doc.RootElement, configPath);
    }

    /// <summary>Reads the `vqvae` block of a parsed config (<paramref name="configPath"/> names it in errors).</summary>
    public static VqVaeConfig ReadVqVaeConfig(JsonElement root, string configPath)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("vqvae", out var block))
            throw new VarSharpException($"Config file {configPath} has no 'vqvae' block, so it describes no tokenizer.");
        return VqVaeConfig.FromJson(block);
    }

    internal static bool IsTokenizerKey(string name) => name.StartsWith("vae.", StringComparison.Ordinal);

    /// <summary>
    /// Builds the tokenizer of a model folder and loads its `vae.*` weights strictly; a bundle's files are verified as
    /// they are read (<see cref="ModelFiles"/>; <paramref name="trust"/>: see <see cref="VerifyIfBundle"/>).
    /// </summary>
    public static VqVae LoadTokenizer(string dir, Device? device = null, BundleTrust? trust = null)
    {
        using var files = ModelFiles.Read(dir, IsTokenizerKey, trust);
        return BuildTokenizer(files, device);
    }

    /// <summary>Builds the tokenizer from a config file and loads `vae.*` weights from a safetensors file strictly.</summary>
    public static VqVae LoadTokenizer(string configPath, string weightsPath, Device? device = null)
    {
        using var files = ModelFiles.Read(configPath, weightsPath, IsTokenizerKey);
        return BuildTokenizer(files, device);
    }

    /// <summary>The tokenizer a folder's config describes, with its `vae.*` weights (copied to the model's device).</summary>
    public static VqVae BuildTokenizer(ModelFiles files, Device? device = null)
    {
        var cfg = ReadVqVaeConfig(files.Config, files.ConfigPath);
        if (!files.Weights.Keys.Any(IsTokenizerKey))
            throw new VarSharpException($"Weights file {files.WeightsPath} holds no tokenizer tensors (no 'vae.' keys).");
        return LoadInto(new VqVae(cfg, device), files, "vae.");
    }

    /// <summary>Loads the `prefix` weights into a freshly built module strictly; the module is disposed if they do not fit.</summary>
    private static T LoadInto<T>(T module, ModelFiles files, string prefix, bool castFloats = false) where T : nn.Module
    {
        try
        {
            ModuleWeights.LoadStrict(module, files.Weights, prefix, castFloats);
            return module;
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }
}
