using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using VarSharp.Checkpoints.Torch;
using VarSharp.Config;
using VarSharp.Tokenizer;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints;

/// <summary>What <see cref="CheckpointImport.Run"/> wrote.</summary>
public sealed record ImportResult(string OutputDir, VqVaeConfig? VqVae, VarConfig? Var, int TensorCount, long TensorBytes);

/// <summary>
/// Turns official PyTorch checkpoints (vae_*.pth, var_d*.pth) into a VarSharp bundle without executing them: each file
/// goes through <see cref="TorchCheckpoint"/>, the architecture is inferred from keys and shapes, checked key by key
/// against the model VarSharp would build (on the meta device, so nothing is allocated), and the weights are written
/// as `vae.*`/`var.*` into model.safetensors beside config.json and a manifest.
/// </summary>
public static class CheckpointImport
{
    /// <param name="signWith">A private key that signs the bundle before it takes its place (null: unsigned).</param>
    public static ImportResult Run(string? vaePath, string? varPath, string outputDir, ImportOptions options, bool force = false, string? signWith = null)
    {
        if (vaePath is null && varPath is null)
            throw new VarSharpException("Nothing to import: give --vae, --var or both.");
        ModelBundle.CheckOutput(Path.GetFullPath(outputDir), force);

        Dictionary<string, Tensor>? vae = null, var = null;
        try
        {
            if (varPath is not null) var = TorchCheckpoint.Load(varPath);
            if (vaePath is not null) vae = TorchCheckpoint.Load(vaePath);

            VarConfig? varCfg = null;
            VqVaeConfig? vaeCfg = null;
            if (var is not null)
            {
                long[]? levels = var.TryGetValue("lvl_1L", out var lvl) && lvl.dtype == ScalarType.Int64 ? lvl.data<long>().ToArray() : null;
                varCfg = ArchitectureInference.InferVar(Shapes(var), levels, options);
                using var model = new VarModel(varCfg, META);
                CheckAgainstModel(model, var, varPath!, varCfg.ToString());
            }
            if (vae is not null)
            {
                vaeCfg = ArchitectureInference.InferVqVae(Shapes(vae), options, varCfg?.PatchNums);
                using var model = new VqVae(vaeCfg, META);
                CheckAgainstModel(model, vae, vaePath!, $"VQ-VAE V {vaeCfg.VocabSize}, Cvae {vaeCfg.ZChannels}, ch {vaeCfg.Ch}, ch_mult [{string.Join(",", vaeCfg.ChMult)}]");
            }
            if (varCfg is not null && vaeCfg is not null && (varCfg.VocabSize != vaeCfg.VocabSize || varCfg.Cvae != vaeCfg.ZChannels))
                throw new VarSharpException(
                    $"The VAR checkpoint expects a tokenizer with V {varCfg.VocabSize} and Cvae {varCfg.Cvae} but the VQ-VAE checkpoint has V {vaeCfg.VocabSize} and Cvae {vaeCfg.ZChannels}.");

            var config = new JsonObject();
            if (vaeCfg is not null) config["vqvae"] = JsonSerializer.SerializeToNode(vaeCfg, JsonConfig.Options);
            if (varCfg is not null) config["var"] = JsonSerializer.SerializeToNode(varCfg, JsonConfig.Options);
            var tensors = new List<KeyValuePair<string, Tensor>>();
            if (vae is not null) tensors.AddRange(vae.Select(kv => new KeyValuePair<string, Tensor>("vae." + kv.Key, kv.Value)));
            if (var is not null) tensors.AddRange(var.Select(kv => new KeyValuePair<string, Tensor>("var." + kv.Key, kv.Value)));

            var sources = new List<BundleSource>();
            if (vaePath is not null) sources.Add(Source("vae", vaePath));
            if (varPath is not null) sources.Add(Source("var", varPath));
            ModelBundle.Write(outputDir, config.ToJsonString(JsonConfig.Options) + "\n", tensors, force, sources, producer: "varsharp import",
                beforeSwap: signWith is null ? null : temp => BundleSignature.Sign(temp, signWith));
            return new ImportResult(Path.GetFullPath(outputDir), vaeCfg, varCfg, tensors.Count, tensors.Sum(t => t.Value.numel() * t.Value.element_size()));
        }
        finally
        {
            foreach (var dict in new[] { vae, var })
                foreach (var t in dict?.Values ?? Enumerable.Empty<Tensor>()) t.Dispose();
        }
    }

    private static Dictionary<string, long[]> Shapes(Dictionary<string, Tensor> stateDict) =>
        stateDict.ToDictionary(kv => kv.Key, kv => kv.Value.shape, StringComparer.Ordinal);

    private static BundleSource Source(string role, string path) =>
        new(role, Path.GetFileName(path), FileDigest.Sha256(path), new FileInfo(path).Length);

    /// <summary>The checkpoint must hold exactly the keys, shapes and dtypes of the model the inferred config builds.</summary>
    private static void CheckAgainstModel(nn.Module model, Dictionary<string, Tensor> stateDict, string file, string architecture)
    {
        var expected = ModuleWeights.Layout(model).ToDictionary(e => e.Name, StringComparer.Ordinal);
        var missing = expected.Keys.Where(k => !stateDict.ContainsKey(k)).ToList();
        var extra = stateDict.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        string? problem = null;
        if (missing.Count > 0) problem = $"it lacks {missing.Count} key(s) that model needs ({Few(missing)})";
        else if (extra.Count > 0) problem = $"it has {extra.Count} key(s) that model does not ({Few(extra)})";
        else
        {
            foreach (var (name, e) in expected)
            {
                var t = stateDict[name];
                if (!t.shape.AsSpan().SequenceEqual(e.Shape) || t.dtype != e.DType)
                {
                    problem = $"'{name}' is {ModuleWeights.Describe(t.shape, t.dtype)} but that model expects {ModuleWeights.Describe(e.Shape, e.DType)}";
                    break;
                }
            }
        }
        if (problem is not null)
            throw new VarSharpException($"{file} does not match the architecture inferred from it ({architecture}): {problem}.");
    }

    private static string Few(List<string> names) => string.Join(", ", names.Take(5)) + (names.Count > 5 ? $" and {names.Count - 5} more" : "");
}
