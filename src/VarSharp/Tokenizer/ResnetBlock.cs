using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using VarSharp.Transformer;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Tokenizer;

/// <summary>
/// GroupNorm → SiLU → conv3x3, twice, plus a 1x1 `nin_shortcut` only when the channel count changes; in training, dropout
/// before the second conv when the rate exceeds 1e-6 (as the reference), drawn from the tokenizer's <see cref="DropoutSource"/>.
/// </summary>
public sealed class ResnetBlock : nn.Module<Tensor, Tensor>
{
    private readonly GroupNorm norm1;
    private readonly Conv2d conv1;
    private readonly GroupNorm norm2;
    private readonly double dropoutRate;
    private readonly DropoutSource? dropoutSource;
    private readonly Conv2d conv2;
    private readonly Conv2d? nin_shortcut;

    public ResnetBlock(int inChannels, int outChannels, double dropoutRate, Device? device, DropoutSource? dropoutSource = null) : base(nameof(ResnetBlock))
    {
        norm1 = Layers.GroupNorm(inChannels, device);
        conv1 = Layers.Conv2d(inChannels, outChannels, 3, 1, 1, device);
        norm2 = Layers.GroupNorm(outChannels, device);
        this.dropoutRate = dropoutRate > 1e-6 ? dropoutRate : 0;
        this.dropoutSource = dropoutSource;
        conv2 = Layers.Conv2d(outChannels, outChannels, 3, 1, 1, device);
        nin_shortcut = inChannels != outChannels ? Layers.Conv2d(inChannels, outChannels, 1, 1, 0, device) : null;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = conv1.call(F.silu(norm1.call(x)));
        h = F.silu(norm2.call(h));
        if (dropoutRate > 0 && training)
            h = Stochastic.Dropout(h, dropoutRate, VarModel.RequireGenerator(dropoutSource?.Generator, "the tokenizer's dropout"));
        h = conv2.call(h);
        var shortcut = nin_shortcut is null ? x : nin_shortcut.call(x);
        return (shortcut + h).MoveToOuterDisposeScope();
    }
}
