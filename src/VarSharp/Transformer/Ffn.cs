using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VarSharp.Transformer;

/// <summary>VAR's FFN: fc2(GELU_tanh(fc1(x))), then dropout (drop_rate, training only).</summary>
public sealed class Ffn : nn.Module
{
    private readonly Linear fc1;
    private readonly Linear fc2;
    private readonly double _dropRate;

    public Ffn(long inFeatures, long hiddenFeatures, double dropRate, Device? device, ScalarType dtype) : base(nameof(Ffn))
    {
        fc1 = Layers.Linear(inFeatures, hiddenFeatures, bias: true, device, dtype);
        fc2 = Layers.Linear(hiddenFeatures, inFeatures, bias: true, device, dtype);
        _dropRate = dropRate;
        RegisterComponents();
    }

    internal Linear Fc1 => fc1;
    internal Linear Fc2 => fc2;

    /// <param name="x_BLC">input tokens</param>
    /// <param name="generator">drawn from for dropout when training with drop_rate &gt; 0</param>
    public Tensor Forward(Tensor x_BLC, Generator? generator)
    {
        using var scope = NewDisposeScope();
        var h_BLF = nn.functional.gelu(fc1.forward(x_BLC), GELU.Approximate.tanh);
        var y_BLC = fc2.forward(h_BLF);
        if (training && _dropRate > 0) y_BLC = Stochastic.Dropout(y_BLC, _dropRate, VarModel.RequireGenerator(generator, "drop_rate"));
        return y_BLC.MoveToOuterDisposeScope();
    }
}
