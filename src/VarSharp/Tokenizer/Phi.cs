using TorchSharp;
using TorchSharp.Modules;
using VarSharp.Config;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Tokenizer;

/// <summary>
/// The residual refiner φ(h) = (1−r)·h + r·conv3x3(h), r = |quant_resi|. Its parameters are named `weight`/`bias`
/// directly (the reference subclasses Conv2d), so it holds them itself rather than wrapping a Conv2d.
/// </summary>
public sealed class Phi : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly double ratio;

    public Phi(int channels, double quantResi, Device? device) : base(nameof(Phi))
    {
        ratio = Math.Abs(quantResi);
        // Borrow Conv2d's default (kaiming-uniform) initialisation.
        using var template = Layers.Conv2d(channels, channels, 3, 1, 1, device);
        weight = new Parameter(template.weight!.detach().clone());
        bias = new Parameter(template.bias!.detach().clone());
        RegisterComponents();
    }

    public override Tensor forward(Tensor h_BChw)
    {
        using var conv = F.conv2d(h_BChw, weight, bias, padding: [1, 1]);
        using var kept = h_BChw.mul(1 - ratio);
        return kept + conv.mul_(ratio);
    }
}

/// <summary>
/// The set of φ modules and the rule choosing one per scale. The three reference variants differ only in how they are
/// named in the state dict: share_quant_resi 0 → `quant_resi.{k}`, 1 → `quant_resi.qresi`, n ≥ 2 → `quant_resi.qresi_ls.{k}`.
/// With |quant_resi| ≤ 1e-6 every φ is the identity and has no keys.
/// </summary>
public sealed class PhiSet : nn.Module
{
    private readonly nn.Module<Tensor, Tensor>[] phis;
    private readonly int[] indexPerScale;

    public PhiSet(VqVaeConfig cfg, Device? device) : base(nameof(PhiSet))
    {
        phis = Enumerable.Range(0, cfg.PhiCount)
            .Select(_ => cfg.HasPhiConv ? (nn.Module<Tensor, Tensor>)new Phi(cfg.ZChannels, cfg.QuantResi, device) : nn.Identity())
            .ToArray();
        indexPerScale = cfg.PhiIndexPerScale();
        switch (cfg.ShareQuantResi)
        {
            case 0:
                for (int k = 0; k < phis.Length; k++) register_module(k.ToString(System.Globalization.CultureInfo.InvariantCulture), phis[k]);
                break;
            case 1:
                register_module("qresi", phis[0]);
                break;
            default:
                register_module("qresi_ls", nn.ModuleList(phis));
                break;
        }
    }

    public IReadOnlyList<int> IndexPerScale => indexPerScale;

    /// <summary>φ for scale si (0-based, of the configured patch_nums).</summary>
    public nn.Module<Tensor, Tensor> ForScale(int si) => phis[indexPerScale[si]];
}
