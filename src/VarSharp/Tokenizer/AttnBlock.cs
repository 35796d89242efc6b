using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Tokenizer;

/// <summary>
/// Single-head spatial self-attention of the VQ-VAE: one 1x1 `qkv` conv split q, k, v; softmax over keys of
/// q·k·C^-0.5; output x + proj_out(h). The reference's key names are qkv/proj_out (not taming's q/k/v).
/// </summary>
public sealed class AttnBlock : nn.Module<Tensor, Tensor>
{
    private readonly GroupNorm norm;
    private readonly Conv2d qkv;
    private readonly Conv2d proj_out;
    private readonly int channels;
    private readonly double scale;

    public AttnBlock(int inChannels, Device? device) : base(nameof(AttnBlock))
    {
        channels = inChannels;
        scale = Math.Pow(inChannels, -0.5);
        norm = Layers.GroupNorm(inChannels, device);
        qkv = Layers.Conv2d(inChannels, 3 * inChannels, 1, 1, 0, device);
        proj_out = Layers.Conv2d(inChannels, inChannels, 1, 1, 0, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x_BChw)
    {
        using var scope = NewDisposeScope();
        long b = x_BChw.shape[0], h = x_BChw.shape[2], w = x_BChw.shape[3];
        var qkv_B3Chw = qkv.call(norm.call(x_BChw)).reshape(b, 3, channels, h, w);
        var q_BNC = qkv_B3Chw[.., 0].reshape(b, channels, h * w).permute(0, 2, 1);
        var k_BCN = qkv_B3Chw[.., 1].reshape(b, channels, h * w);
        var v_BCN = qkv_B3Chw[.., 2].reshape(b, channels, h * w);
        var attn_BNN = F.softmax(bmm(q_BNC, k_BCN).mul_(scale), dim: 2);
        var out_BCN = bmm(v_BCN, attn_BNN.permute(0, 2, 1));
        return (x_BChw + proj_out.call(out_BCN.view(b, channels, h, w))).MoveToOuterDisposeScope();
    }
}
