using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VarSharp.Transformer;

/// <summary>Final AdaLN before the head: LN(x)·(1 + scale) + shift, with (scale, shift) = SiLU→Linear(D, 2C) of the condition.</summary>
public sealed class AdaLnBeforeHead : nn.Module
{
    private readonly Sequential ada_lin;
    private readonly long _c;
    private readonly double _eps;

    public AdaLnBeforeHead(long c, long d, double normEps, Device? device, ScalarType dtype) : base(nameof(AdaLnBeforeHead))
    {
        _c = c;
        _eps = normEps;
        ada_lin = Layers.SiLULinear(d, 2 * c, device, dtype);
        RegisterComponents();
    }

    internal Linear AdaLinear => Layers.LinearOf(ada_lin);

    public Tensor Forward(Tensor x_BLC, Tensor cond_BD)
    {
        using var scope = NewDisposeScope();
        var ss_B12C = ada_lin.forward(cond_BD).view(-1, 1, 2, _c);
        var parts = ss_B12C.unbind(2);
        var scale_B1C = parts[0];
        var shift_B1C = parts[1];
        var ln_BLC = nn.functional.layer_norm(x_BLC, [_c], null, null, _eps);
        return ln_BLC.mul(scale_B1C.add(1)).add_(shift_B1C).MoveToOuterDisposeScope();
    }
}
