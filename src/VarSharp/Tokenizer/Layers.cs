using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VarSharp.Tokenizer;

internal static class Layers
{
    /// <summary>Conv2d with an explicit integer padding (a literal 0 would bind to the Padding enum overload).</summary>
    public static Conv2d Conv2d(long inChannels, long outChannels, long kernel, long stride, long padding, Device? device) =>
        nn.Conv2d(inChannels, outChannels, kernel, stride, padding, device: device);

    /// <summary>
    /// GroupNorm(32, C, eps 1e-6, affine) as the reference. TorchSharp 0.107 leaves the affine parameters
    /// uninitialised (seen as NaN/garbage), so they are set to PyTorch's defaults, ones and zeros, here.
    /// </summary>
    public static GroupNorm GroupNorm(int channels, Device? device)
    {
        var norm = nn.GroupNorm(Config.VqVaeConfig.NormGroups, channels, eps: 1e-6, affine: true, device: device);
        using var noGrad = no_grad();
        norm.weight!.fill_(1);
        norm.bias!.zero_();
        return norm;
    }
}
