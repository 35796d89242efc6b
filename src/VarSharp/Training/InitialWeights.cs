using TorchSharp;
using VarSharp.Checkpoints;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>
/// Starting a training run from existing weights (fine-tuning, e.g. an imported official model on new data): after the
/// usual seeded initialisation, the module takes a model folder's weights strictly — every tensor present with its
/// shape — except the named parameters that keep their fresh initialisation (a class embedding for other classes).
/// </summary>
public static class InitialWeights
{
    /// <summary>The transformer's parameters that depend on the number of classes.</summary>
    public static readonly IReadOnlySet<string> ClassParameters = new HashSet<string>(StringComparer.Ordinal) { "class_emb.weight" };

    /// <summary>Loads the <paramref name="prefix"/> weights into <paramref name="module"/>; <paramref name="keepFresh"/> (names without the prefix) keep theirs.</summary>
    public static void Apply(nn.Module module, IReadOnlyDictionary<string, Tensor> weights, string prefix, IReadOnlySet<string>? keepFresh, string source)
    {
        var merged = weights.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal) && keepFresh?.Contains(kv.Key[prefix.Length..]) != true)
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        if (keepFresh is not null)
            foreach (var (name, p) in module.named_parameters())
                if (keepFresh.Contains(name)) merged[prefix + name] = p;
        try
        {
            // A bundle stored in bf16 (`convert`) starts a float32 run from its widened weights.
            ModuleWeights.LoadStrict(module, merged, prefix, castFloats: true);
        }
        catch (VarSharpException e)
        {
            throw new VarSharpException($"The initial weights in {source} do not fit the model to train: {e.Message}", e);
        }
    }
}
