using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>
/// The PatchGAN discriminator of pix2pix as VQGAN uses it (taming-transformers' NLayerDiscriminator): a 4×4 stride-2
/// convolution with LeakyReLU(0.2), then <c>layers − 1</c> more stride-2 convolutions and one stride-1 convolution, each
/// followed by BatchNorm and LeakyReLU, with channels doubling up to 8× the base, and a final 4×4 convolution to one
/// logit per patch. Parameter names follow the same nn.Sequential numbering (<c>main.0.weight</c> …), so the state
/// of a discriminator trained elsewhere maps onto this one key for key.
/// </summary>
public sealed class PatchDiscriminator : nn.Module<Tensor, Tensor>
{
    private readonly Sequential main;

    /// <remarks>Built on the CPU; callers move it (TrainDevice.Create), so a seed gives the same weights everywhere.</remarks>
    public PatchDiscriminator(int inChannels, int channels, int layers) : base(nameof(PatchDiscriminator))
    {
        if (layers < 1) throw new ArgumentOutOfRangeException(nameof(layers), layers, "a discriminator needs at least one layer");
        var modules = new List<(string, nn.Module<Tensor, Tensor>)>();
        void Add(nn.Module<Tensor, Tensor> m) => modules.Add((modules.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), m));

        Add(nn.Conv2d(inChannels, channels, 4, stride: 2, padding: 1));
        Add(nn.LeakyReLU(0.2));
        int width = channels;
        for (int n = 1; n <= layers; n++)
        {
            int next = channels * Math.Min(1 << n, 8);
            // The last of these keeps the resolution (stride 1), as in pix2pix.
            Add(nn.Conv2d(width, next, 4, stride: n < layers ? 2 : 1, padding: 1, bias: false));
            Add(nn.BatchNorm2d(next));
            Add(nn.LeakyReLU(0.2));
            width = next;
        }
        Add(nn.Conv2d(width, 1, 4, stride: 1, padding: 1));
        main = nn.Sequential(modules);
        RegisterComponents();
    }

    /// <summary>Logits (B, 1, h, w), one per overlapping patch of the image.</summary>
    public override Tensor forward(Tensor image) => main.call(image);

    /// <summary>
    /// The logit map's side for a square input: every stride-2 4×4 convolution with padding 1 halves it, the two
    /// stride-1 ones each take one away. Smaller than 1 means the image is too small for this many layers.
    /// </summary>
    public static int OutputSize(int imageSize, int layers)
    {
        int s = imageSize;
        for (int i = 0; i < layers; i++) s /= 2;
        return s - 2;
    }

    /// <summary>
    /// The pix2pix/VQGAN initialisation from an explicit generator: convolution weights N(0, 0.02), BatchNorm weights
    /// N(1, 0.02) and biases 0; convolution biases keep PyTorch's default U(±1/√fan_in).
    /// </summary>
    public void Initialize(Generator generator)
    {
        using var noGrad = no_grad();
        foreach (var layer in main.children())
        {
            switch (layer)
            {
                case Conv2d conv:
                    conv.weight!.normal_(0.0, 0.02, generator);
                    if (conv.bias is { } bias)
                    {
                        double bound = TokenizerInit.Bound(conv.weight);
                        bias.uniform_(-bound, bound, generator);
                    }
                    break;
                case BatchNorm2d norm:
                    norm.weight!.normal_(1.0, 0.02, generator);
                    norm.bias!.zero_();
                    break;
            }
        }
    }
}
