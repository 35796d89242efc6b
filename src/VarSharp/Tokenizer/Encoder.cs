using TorchSharp;
using TorchSharp.Modules;
using VarSharp.Config;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Tokenizer;

/// <summary>One resolution level of the encoder: res blocks (attention after each only at the last level) and a downsample.</summary>
public sealed class EncoderLevel : nn.Module
{
    internal readonly ModuleList<ResnetBlock> block;
    internal readonly ModuleList<AttnBlock> attn;
    internal readonly Downsample2x? downsample;

    public EncoderLevel(IEnumerable<ResnetBlock> blocks, IEnumerable<AttnBlock> attns, Downsample2x? down) : base(nameof(EncoderLevel))
    {
        block = nn.ModuleList(blocks.ToArray());
        attn = nn.ModuleList(attns.ToArray());
        downsample = down;
        RegisterComponents();
    }
}

/// <summary>block_1 → attn_1 (only if using_mid_sa) → block_2 at the lowest resolution.</summary>
public sealed class MidBlock : nn.Module<Tensor, Tensor>
{
    private readonly ResnetBlock block_1;
    private readonly AttnBlock? attn_1;
    private readonly ResnetBlock block_2;

    public MidBlock(int channels, bool usingAttention, double dropout, Device? device, DropoutSource? dropoutSource = null) : base(nameof(MidBlock))
    {
        block_1 = new ResnetBlock(channels, channels, dropout, device, dropoutSource);
        attn_1 = usingAttention ? new AttnBlock(channels, device) : null;
        block_2 = new ResnetBlock(channels, channels, dropout, device, dropoutSource);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = block_1.call(x);
        if (attn_1 is not null) h = attn_1.call(h);
        return block_2.call(h).MoveToOuterDisposeScope();
    }
}

/// <summary>The VQ-VAE encoder (LDM layout, as the reference): image (B,in,H,W) → latent (B,Cvae,H/d,W/d) before quant_conv.</summary>
public sealed class Encoder : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly ModuleList<EncoderLevel> down;
    private readonly MidBlock mid;
    private readonly GroupNorm norm_out;
    private readonly Conv2d conv_out;

    public Encoder(VqVaeConfig cfg, Device? device, DropoutSource? dropoutSource = null) : base(nameof(Encoder))
    {
        int levels = cfg.ChMult.Length;
        conv_in = Layers.Conv2d(cfg.InChannels, cfg.Ch, 3, 1, 1, device);
        var levelModules = new List<EncoderLevel>();
        int blockIn = cfg.Ch;
        for (int level = 0; level < levels; level++)
        {
            int blockOut = cfg.Ch * cfg.ChMult[level];
            var blocks = new List<ResnetBlock>();
            var attns = new List<AttnBlock>();
            for (int i = 0; i < cfg.NumResBlocks; i++)
            {
                blocks.Add(new ResnetBlock(blockIn, blockOut, cfg.Dropout, device, dropoutSource));
                blockIn = blockOut;
                if (level == levels - 1 && cfg.UsingSa) attns.Add(new AttnBlock(blockIn, device));
            }
            levelModules.Add(new EncoderLevel(blocks, attns, level != levels - 1 ? new Downsample2x(blockIn, device) : null));
        }
        down = nn.ModuleList(levelModules.ToArray());
        mid = new MidBlock(blockIn, cfg.UsingMidSa, cfg.Dropout, device, dropoutSource);
        norm_out = Layers.GroupNorm(blockIn, device);
        conv_out = Layers.Conv2d(blockIn, cfg.ZChannels, 3, 1, 1, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = conv_in.call(x);
        foreach (var level in down)
        {
            for (int i = 0; i < level.block.Count; i++)
            {
                h = level.block[i].call(h);
                if (level.attn.Count > 0) h = level.attn[i].call(h);
            }
            if (level.downsample is not null) h = level.downsample.call(h);
        }
        h = mid.call(h);
        return conv_out.call(F.silu(norm_out.call(h))).MoveToOuterDisposeScope();
    }
}
