using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VarSharp.Transformer;

/// <summary>
/// Building blocks created without touching any RNG: parameters start at zero (or a documented constant) and get
/// their values from <see cref="VarModel.InitWeights"/> or a checkpoint. Works on any device, including "meta".
/// </summary>
internal static class Layers
{
    public static Linear Linear(long inFeatures, long outFeatures, bool bias, Device? device, ScalarType dtype)
    {
        var w = new Parameter(zeros(outFeatures, inFeatures, dtype: dtype, device: device));
        var b = bias ? new Parameter(zeros(outFeatures, dtype: dtype, device: device)) : null;
        return nn.Linear(w, b);
    }

    /// <summary>SiLU followed by Linear(D, outFeatures), registered as children "0" and "1" like nn.Sequential.</summary>
    public static Sequential SiLULinear(long inFeatures, long outFeatures, Device? device, ScalarType dtype) =>
        nn.Sequential(nn.SiLU(), Linear(inFeatures, outFeatures, bias: true, device, dtype));

    /// <summary>The Linear inside a <see cref="SiLULinear"/>.</summary>
    public static Linear LinearOf(Sequential siluLinear) => (Linear)siluLinear[1];
}

/// <summary>
/// A lookup table with one parameter named <c>weight</c> (the state-dict layout of nn.Embedding). TorchSharp's own
/// Embedding is created natively on the CPU and initialised from the global RNG; this one is created in place.
/// </summary>
public sealed class EmbeddingTable : nn.Module<Tensor, Tensor>
{
    private Parameter weight;

    public EmbeddingTable(long numEmbeddings, long embeddingDim, Device? device, ScalarType dtype) : base(nameof(EmbeddingTable))
    {
        weight = new Parameter(zeros(numEmbeddings, embeddingDim, dtype: dtype, device: device));
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public long NumEmbeddings => weight.shape[0];

    public override Tensor forward(Tensor idx)
    {
        var shape = idx.shape.Append(weight.shape[1]).ToArray();
        using var flat = idx.reshape(-1);
        using var rows = weight.index_select(0, flat);
        return rows.reshape(shape);
    }
}
