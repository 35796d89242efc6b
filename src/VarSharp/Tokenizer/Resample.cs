using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Tokenizer;

/// <summary>Pad right and bottom by one (asymmetric, as the reference), then a stride-2 3x3 conv without padding.</summary>
public sealed class Downsample2x : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv;

    public Downsample2x(int channels, Device? device) : base(nameof(Downsample2x))
    {
        conv = Layers.Conv2d(channels, channels, 3, 2, 0, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var padded = F.pad(x, [0, 1, 0, 1], PaddingModes.Constant, 0);
        return conv.call(padded);
    }
}

/// <summary>Nearest-neighbour ×2 followed by a 3x3 conv.</summary>
public sealed class Upsample2x : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv;

    public Upsample2x(int channels, Device? device) : base(nameof(Upsample2x))
    {
        conv = Layers.Conv2d(channels, channels, 3, 1, 1, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var up = F.interpolate(x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest);
        return conv.call(up);
    }
}
