using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Tokenizer;

/// <summary>GroupNorm → SiLU → conv3x3, twice, plus a 1x1 `nin_shortcut` only when the channel count changes.</summary>
public sealed class ResnetBlock : nn.Module<Tensor, Tensor>
{
    private readonly GroupNorm norm1;
    private readonly Conv2d conv1;
    private readonly GroupNorm norm2;
    private readonly Dropout? dropout;
    private readonly Conv2d conv2;
    private readonly Conv2d? nin_shortcut;

    public ResnetBlock(int inChannels, int outChannels, double dropoutRate, Device? device) : base(nameof(ResnetBlock))
    {
        norm1 = Layers.GroupNorm(inChannels, device);
        conv1 = Layers.Conv2d(inChannels, outChannels, 3, 1, 1, device);
        norm2 = Layers.GroupNorm(outChannels, device);
        dropout = dropoutRate > 1e-6 ? nn.Dropout(dropoutRate) : null;
        conv2 = Layers.Conv2d(outChannels, outChannels, 3, 1, 1, device);
        nin_shortcut = inChannels != outChannels ? Layers.Conv2d(inChannels, outChannels, 1, 1, 0, device) : null;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = conv1.call(F.silu(norm1.call(x)));
        h = F.silu(norm2.call(h));
        if (dropout is not null) h = dropout.call(h);
        h = conv2.call(h);
        var shortcut = nin_shortcut is null ? x : nin_shortcut.call(x);
        return (shortcut + h).MoveToOuterDisposeScope();
    }
}
