using TorchSharp;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints;

/// <summary>Strict state-dict loading: every key present, nothing unexpected, shapes and dtypes equal.</summary>
public static class ModuleWeights
{
    /// <summary>
    /// Copies weights[prefix + key] into every parameter and buffer of the module (without tracking gradients).
    /// Keys of the dictionary that start with the prefix but name nothing in the module are an error, as are missing
    /// keys and shape or dtype mismatches; each error names the key and both shapes.
    /// </summary>
    public static void LoadStrict(nn.Module module, IReadOnlyDictionary<string, Tensor> weights, string prefix = "", string what = "model")
    {
        var own = module.state_dict();
        var missing = own.Keys.Where(k => !weights.ContainsKey(prefix + k)).ToList();
        if (missing.Count > 0)
            throw new VarSharpException($"The {what} weights lack {missing.Count} key(s) the config needs, first '{prefix}{missing[0]}'.");
        var unexpected = weights.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && !own.ContainsKey(k[prefix.Length..])).ToList();
        if (unexpected.Count > 0)
            throw new VarSharpException($"The {what} weights hold {unexpected.Count} key(s) the config does not build, first '{unexpected[0]}'.");
        foreach (var (key, target) in own)
        {
            var source = weights[prefix + key];
            if (!source.shape.SequenceEqual(target.shape))
                throw new VarSharpException(
                    $"Weight '{prefix}{key}' has shape ({string.Join(", ", source.shape)}) but the config needs ({string.Join(", ", target.shape)}).");
            if (source.dtype != target.dtype && !(source.is_floating_point() && target.is_floating_point()))
                throw new VarSharpException($"Weight '{prefix}{key}' has dtype {source.dtype} but the model needs {target.dtype}.");
        }
        using var noGrad = no_grad();
        foreach (var (key, target) in own)
            target.copy_(weights[prefix + key]);
    }
}
