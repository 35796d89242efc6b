using System.Text.Json;
using VarSharp.Config;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints;

public static partial class ModelFolder
{
    /// <summary>
    /// Reads the transformer's config from a config file: the `var` block, with V and Cvae taken from the `vqvae` block
    /// (vocab_size, z_channels). A `var` block that states its own vocab_size, cvae or patch_nums different from the
    /// tokenizer's is refused.
    /// </summary>
    public static VarConfig ReadVarConfig(string configPath)
    {
        using var doc = JsonConfig.ParseFile(configPath);
        return ReadVarConfig(doc.RootElement, configPath);
    }

    /// <summary><see cref="ReadVarConfig(string)"/> on a parsed config (<paramref name="configPath"/> names it in errors).</summary>
    public static VarConfig ReadVarConfig(JsonElement root, string configPath)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("var", out var varBlock))
            throw new VarSharpException($"Config file {configPath} has no 'var' block, so it describes no transformer.");
        // A transformer-only bundle (an imported var_d*.pth) states vocab_size and cvae in its own block.
        if (!root.TryGetProperty("vqvae", out var vqBlock))
            return VarConfig.FromJson(varBlock.GetRawText());
        var vq = VqVaeConfig.FromJson(vqBlock);
        if (varBlock.TryGetProperty("vocab_size", out var v) && v.ValueKind == JsonValueKind.Number && v.GetInt32() != vq.VocabSize)
            throw new VarSharpException($"Config file {configPath}: the transformer's vocab_size {v.GetInt32()} differs from the tokenizer's vocab_size {vq.VocabSize}.");
        if (varBlock.TryGetProperty("cvae", out var c) && c.ValueKind == JsonValueKind.Number && c.GetInt32() != vq.ZChannels)
            throw new VarSharpException($"Config file {configPath}: the transformer's cvae {c.GetInt32()} differs from the tokenizer's z_channels {vq.ZChannels}.");
        var cfg = VarConfig.FromGoldenConfig(root);
        CheckCompatible(cfg, vq);
        return cfg;
    }

    /// <summary>
    /// Throws a one-sentence <see cref="VarSharpException"/> unless the transformer reads and writes the tokenizer's
    /// tokens: same vocabulary size V, same latent width Cvae and the same scales (patch_nums).
    /// </summary>
    public static void CheckCompatible(VarConfig transformer, VqVaeConfig tokenizer)
    {
        ArgumentNullException.ThrowIfNull(transformer);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (transformer.VocabSize != tokenizer.VocabSize)
            throw new VarSharpException(
                $"The transformer predicts {transformer.VocabSize} token ids but the tokenizer's codebook has {tokenizer.VocabSize} entries; they must be equal.");
        if (transformer.Cvae != tokenizer.ZChannels)
            throw new VarSharpException(
                $"The transformer reads latents of width {transformer.Cvae} but the tokenizer's z_channels is {tokenizer.ZChannels}; they must be equal.");
        if (!transformer.PatchNums.AsSpan().SequenceEqual(tokenizer.VPatchNums))
            throw new VarSharpException(
                $"The transformer's patch_nums [{string.Join(", ", transformer.PatchNums)}] differ from the tokenizer's v_patch_nums [{string.Join(", ", tokenizer.VPatchNums)}].");
    }

    internal static bool IsTransformerKey(string name) => name.StartsWith("var.", StringComparison.Ordinal);

    /// <summary>
    /// Builds the transformer of a model folder and loads its `var.*` weights strictly (eval mode); a bundle's files are
    /// verified as they are read (<see cref="ModelFiles"/>; <paramref name="trust"/>: see <see cref="VerifyIfBundle"/>).
    /// </summary>
    public static VarModel LoadTransformer(string dir, Device? device = null, BundleTrust? trust = null)
    {
        using var files = ModelFiles.Read(dir, IsTransformerKey, trust);
        return BuildTransformer(files, device);
    }

    /// <summary>Builds the transformer from a config file and loads `var.*` weights from a safetensors file strictly (eval mode).</summary>
    public static VarModel LoadTransformer(string configPath, string weightsPath, Device? device = null)
    {
        using var files = ModelFiles.Read(configPath, weightsPath, IsTransformerKey);
        return BuildTransformer(files, device);
    }

    /// <summary>The transformer a folder's config describes, with its `var.*` weights (eval mode, on <paramref name="device"/>).</summary>
    /// <param name="dtype">The transformer's floating-point type: Float32 (default, the reference's), or BFloat16 / Float16 to halve its memory; weights of any floating type are converted as they load.</param>
    public static VarModel BuildTransformer(ModelFiles files, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new VarSharpException($"The transformer computes in float32, bfloat16 or float16, not {dtype}.");
        var cfg = ReadVarConfig(files.Config, files.ConfigPath);
        if (!files.Weights.Keys.Any(IsTransformerKey))
            throw new VarSharpException($"Weights file {files.WeightsPath} holds no transformer tensors (no 'var.' keys).");
        // Weights stored in a reduced type (`convert`) are widened, or narrowed for a reduced-precision model, as they load.
        var model = LoadInto(new VarModel(cfg, device, dtype), files, "var.", castFloats: true);
        model.eval();
        return model;
    }
}
