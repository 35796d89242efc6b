using TorchSharp;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints;

/// <summary>One entry of a module's state dict: name, shape, dtype and whether it is a parameter or a buffer.</summary>
public sealed record StateEntry(string Name, long[] Shape, ScalarType DType, bool IsParameter)
{
    public long NumElements => Shape.Aggregate(1L, (a, b) => a * b);
    public override string ToString() => $"{Name} {ModuleWeights.Describe(Shape, DType)} ({(IsParameter ? "param" : "buffer")})";
}

/// <summary>
/// Generic state-dict plumbing for any TorchSharp module whose fields follow the PyTorch key names: list its layout
/// and load a checkpoint strictly (every key present, no extras, same shapes and dtypes).
/// </summary>
public static class ModuleWeights
{
    /// <summary>Parameters and persistent buffers of <paramref name="module"/>, parameters first.</summary>
    public static IReadOnlyList<StateEntry> Layout(nn.Module module)
    {
        var list = new List<StateEntry>();
        foreach (var (name, p) in module.named_parameters()) list.Add(new StateEntry(name, p.shape, p.dtype, true));
        foreach (var (name, b) in module.named_buffers(include_nonpersistent: false)) list.Add(new StateEntry(name, b.shape, b.dtype, false));
        return list;
    }

    /// <summary>
    /// Copies <paramref name="stateDict"/> into the parameters and persistent buffers of <paramref name="module"/>
    /// (without gradient tracking, onto the module's devices). Only keys that start with <paramref name="prefix"/> are
    /// considered, with the prefix stripped, so one file holding several models can be loaded model by model.
    /// Throws <see cref="VarSharpException"/> on a missing key, an unexpected key, or a shape or dtype mismatch.
    /// </summary>
    /// <param name="castFloats">Accept floating-point tensors of another floating-point dtype and convert them (a model built in bf16 taking fp32 weights).</param>
    public static void LoadStrict(nn.Module module, IReadOnlyDictionary<string, Tensor> stateDict, string prefix = "", bool castFloats = false)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(stateDict);
        string what = module.GetType().Name;

        var targets = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, p) in module.named_parameters()) targets[name] = p;
        foreach (var (name, b) in module.named_buffers(include_nonpersistent: false)) targets[name] = b;

        var given = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, t) in stateDict)
            if (key.StartsWith(prefix, StringComparison.Ordinal)) given[key[prefix.Length..]] = t;

        var missing = targets.Keys.Where(k => !given.ContainsKey(k)).ToList();
        if (missing.Count > 0)
            throw new VarSharpException(
                $"the checkpoint lacks {missing.Count} {Plural(missing.Count, "key")} that {what} needs: {List(missing, prefix)}.");
        var unexpected = given.Keys.Where(k => !targets.ContainsKey(k)).ToList();
        if (unexpected.Count > 0)
            throw new VarSharpException(
                $"the checkpoint has {unexpected.Count} {Plural(unexpected.Count, "key")} that {what} does not have: {List(unexpected, prefix)}.");

        foreach (var (name, target) in targets)
        {
            var src = given[name];
            bool dtypeOk = src.dtype == target.dtype || (castFloats && src.is_floating_point() && target.is_floating_point());
            if (!src.shape.AsSpan().SequenceEqual(target.shape) || !dtypeOk)
                throw new VarSharpException(
                    $"checkpoint tensor '{prefix}{name}' is {Describe(src.shape, src.dtype)} but {what} expects {Describe(target.shape, target.dtype)}.");
        }

        using var noGrad = no_grad();
        foreach (var (name, target) in targets) target.copy_(given[name]);
    }

    internal static string Describe(long[] shape, ScalarType dtype) => $"[{string.Join(", ", shape)}] {dtype}";

    private static string Plural(int n, string word) => n == 1 ? word : word + "s";

    private static string List(List<string> names, string prefix)
    {
        const int Max = 8;
        var shown = names.Take(Max).Select(n => prefix + n);
        return string.Join(", ", shown) + (names.Count > Max ? $" and {names.Count - Max} more" : "");
    }
}
