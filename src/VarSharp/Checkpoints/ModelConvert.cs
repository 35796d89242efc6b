using TorchSharp;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints;

/// <summary>What <see cref="ModelConvert.StoreTransformerAs"/> wrote.</summary>
public sealed record ConvertResult(string OutputDir, int Converted, long BytesBefore, long BytesAfter);

/// <summary>
/// Rewrites a model folder as a new bundle whose transformer (`var.*`) floating-point tensors are stored in another
/// type: bfloat16 or float16 halve their size, float32 widens a converted bundle back (its values stay rounded); the
/// tokenizer (`vae.*`), whose decoder turns every sample into
/// pixels, keeps its own. The source is verified as it is read, and the new manifest names the source weights' SHA-256.
/// Loaders widen the stored values to the type the model computes in, so the bundle samples as before up to the
/// rounding of the weights.
/// </summary>
public static class ModelConvert
{
    public static ConvertResult StoreTransformerAs(string modelDir, string outputDir, ScalarType dtype, bool force = false, BundleTrust? trust = null)
    {
        if (dtype is not (ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32))
            throw new VarSharpException($"Weights can be stored as float32, bfloat16 or float16, not {dtype}.");
        // Checked before the model is read: replacing the source with a rounded copy of itself would lose its weights.
        var output = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputDir));
        if (Real(output) == Real(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDir))))
            throw new VarSharpException($"The output {output} is the model being converted; write the converted bundle elsewhere.");
        ModelBundle.CheckOutput(output, force);
        using var files = ModelFiles.Read(modelDir, _ => true, trust);
        if (!files.Weights.Keys.Any(ModelFolder.IsTransformerKey))
            throw new VarSharpException($"{files.WeightsPath} holds no transformer tensors (no 'var.' keys) to convert.");
        // The config is checked the way loading checks it, so a bundle is never written around one that cannot load.
        ModelFolder.ReadVarConfig(files.Config, files.ConfigPath);
        using var scope = NewDisposeScope();
        int converted = 0;
        long before = 0, after = 0;
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (name, t) in files.Weights.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            before += t.numel() * t.element_size();
            var stored = t;
            if (ModelFolder.IsTransformerKey(name) && t.is_floating_point() && t.dtype != dtype)
            {
                stored = t.to(dtype);
                converted++;
            }
            after += stored.numel() * stored.element_size();
            tensors.Add(KeyValuePair.Create(name, stored));
        }
        long sourceBytes = new FileInfo(files.WeightsPath).Length;
        // The config as verified (its raw text), not a second read of the file.
        ModelBundle.Write(outputDir, files.Config.GetRawText(), tensors, force,
            [new BundleSource("converted-from", Path.GetFileName(files.WeightsPath), files.WeightsSha256, sourceBytes)], producer: "varsharp convert");
        return new ConvertResult(Path.GetFullPath(outputDir), converted, before, after);
    }

    // A folder's path with symbolic links resolved (the path itself when it is no link or does not exist).
    private static string Real(string dir) =>
        Directory.Exists(dir) && new DirectoryInfo(dir).ResolveLinkTarget(returnFinalTarget: true) is { } target ? target.FullName : dir;
}
