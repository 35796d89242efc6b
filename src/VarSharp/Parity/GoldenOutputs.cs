using static TorchSharp.torch;

namespace VarSharp.Parity;

/// <summary>
/// Tensors a golden producer recomputed, by vectors.safetensors name, plus optional looser per-element allowances
/// (a bool mask of elements allowed up to <see cref="LooseAllowance.Limit"/>, e.g. after-step parameters whose gradient
/// was about eps in size). Owns its tensors.
/// </summary>
public sealed class GoldenOutputs : IDisposable
{
    public Dictionary<string, Tensor> Tensors { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, LooseAllowance> Loose { get; } = new(StringComparer.Ordinal);

    public Tensor this[string name]
    {
        set => Tensors[name] = value;
    }

    public static GoldenOutputs From(Dictionary<string, Tensor> tensors)
    {
        var o = new GoldenOutputs();
        foreach (var (k, v) in tensors) o.Tensors[k] = v;
        return o;
    }

    /// <summary>Moves everything of <paramref name="other"/> into this set (later producers win on equal names).</summary>
    public void Absorb(GoldenOutputs other)
    {
        foreach (var (k, v) in other.Tensors)
        {
            if (Tensors.TryGetValue(k, out var old)) old.Dispose();
            Tensors[k] = v;
        }
        foreach (var (k, v) in other.Loose)
        {
            if (Loose.TryGetValue(k, out var old)) old.Mask.Dispose();
            Loose[k] = v;
        }
        other.Tensors.Clear();
        other.Loose.Clear();
    }

    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
        foreach (var l in Loose.Values) l.Mask.Dispose();
        Tensors.Clear();
        Loose.Clear();
    }
}

/// <summary>Elements where <see cref="Mask"/> is true may differ by up to <see cref="Limit"/> instead of the strict tolerance.</summary>
public sealed record LooseAllowance(Tensor Mask, double Limit);
