using TorchSharp;
using TorchSharp.Modules;
using VarSharp.Config;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Tokenizer;

/// <summary>One resolution level of the decoder: num_res_blocks+1 res blocks (attention only at the last level) and an upsample.</summary>
public sealed class DecoderLevel : nn.Module
{
    internal readonly ModuleList<ResnetBlock> block;
    internal readonly ModuleList<AttnBlock> attn;
    internal readonly Upsample2x? upsample;

    public DecoderLevel(IEnumerable<ResnetBlock> blocks, IEnumerable<AttnBlock> attns, Upsample2x? up) : base(nameof(DecoderLevel))
    {
        block = nn.ModuleList(blocks.ToArray());
        attn = nn.ModuleList(attns.ToArray());
        upsample = up;
        RegisterComponents();
    }
}

/// <summary>
/// The VQ-VAE decoder: latent (after post_quant_conv) → image. `up[0]` is the highest resolution and the forward pass
/// runs the levels from last to first, as in the reference.
/// </summary>
public sealed class Decoder : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly MidBlock mid;
    private readonly ModuleList<DecoderLevel> up;
    private readonly GroupNorm norm_out;
    private readonly Conv2d conv_out;

    /// <summary>The last convolution's weight (`decoder.conv_out.weight`), where VQGAN's adaptive weight compares gradients.</summary>
    internal TorchSharp.Modules.Parameter LastLayerWeight => conv_out.weight!;

    public Decoder(VqVaeConfig cfg, Device? device, DropoutSource? dropoutSource = null) : base(nameof(Decoder))
    {
        int levels = cfg.ChMult.Length;
        int blockIn = cfg.Ch * cfg.ChMult[levels - 1];
        conv_in = Layers.Conv2d(cfg.ZChannels, blockIn, 3, 1, 1, device);
        mid = new MidBlock(blockIn, cfg.UsingMidSa, cfg.Dropout, device, dropoutSource);
        var levelModules = new DecoderLevel[levels];
        for (int level = levels - 1; level >= 0; level--)
        {
            int blockOut = cfg.Ch * cfg.ChMult[level];
            var blocks = new List<ResnetBlock>();
            var attns = new List<AttnBlock>();
            for (int i = 0; i < cfg.NumResBlocks + 1; i++)
            {
                blocks.Add(new ResnetBlock(blockIn, blockOut, cfg.Dropout, device, dropoutSource));
                blockIn = blockOut;
                if (level == levels - 1 && cfg.UsingSa) attns.Add(new AttnBlock(blockIn, device));
            }
            levelModules[level] = new DecoderLevel(blocks, attns, level != 0 ? new Upsample2x(blockIn, device) : null);
        }
        up = nn.ModuleList(levelModules);
        norm_out = Layers.GroupNorm(blockIn, device);
        conv_out = Layers.Conv2d(blockIn, cfg.InChannels, 3, 1, 1, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor z)
    {
        using var scope = NewDisposeScope();
        var h = mid.call(conv_in.call(z));
        for (int levelIndex = up.Count - 1; levelIndex >= 0; levelIndex--)
        {
            var level = up[levelIndex];
            for (int i = 0; i < level.block.Count; i++)
            {
                h = level.block[i].call(h);
                if (level.attn.Count > 0) h = level.attn[i].call(h);
            }
            if (level.upsample is not null) h = level.upsample.call(h);
        }
        return conv_out.call(F.silu(norm_out.call(h))).MoveToOuterDisposeScope();
    }
}
