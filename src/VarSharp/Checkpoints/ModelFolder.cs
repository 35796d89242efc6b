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
        if (!doc.RootElement.TryGetProperty("vqvae", out var block))
            throw new VarSharpException($"Config file {configPath} has no 'vqvae' block, so it describes no tokenizer.");
        return VqVaeConfig.FromJson(block);
    }

    /// <summary>Builds the tokenizer of a model folder and loads its `vae.*` weights strictly (see <see cref="VerifyIfBundle"/> for <paramref name="trust"/>).</summary>
    public static VqVae LoadTokenizer(string dir, Device? device = null, BundleTrust? trust = null)
    {
        VerifyIfBundle(dir, trust);
        return LoadTokenizer(ConfigPath(dir), WeightsPath(dir), device);
    }

    /// <summary>Builds the tokenizer from a config file and loads `vae.*` weights from a safetensors file strictly.</summary>
    public static VqVae LoadTokenizer(string configPath, string weightsPath, Device? device = null)
    {
        var cfg = ReadVqVaeConfig(configPath);
        var header = SafeTensors.ReadHeader(weightsPath);
        var names = header.Entries.Where(e => e.Name.StartsWith("vae.", StringComparison.Ordinal)).Select(e => e.Name).ToList();
        if (names.Count == 0) throw new VarSharpException($"Weights file {weightsPath} holds no tokenizer tensors (no 'vae.' keys).");
        var weights = new Dictionary<string, Tensor>();
        try
        {
            foreach (var name in names) weights[name] = SafeTensors.LoadTensor(weightsPath, header, name);   // on the CPU: copied into the model's device once
            var vae = new VqVae(cfg, device);
            try
            {
                ModuleWeights.LoadStrict(vae, weights, "vae.");
            }
            catch
            {
                vae.Dispose();
                throw;
            }
            return vae;
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
    }
}
