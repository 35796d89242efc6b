using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VarSharp.Tokenizer;

internal static class Layers
{
    /// <summary>Conv2d with an explicit integer padding (a literal 0 would bind to the Padding enum overload).</summary>
    public static Conv2d Conv2d(long inChannels, long outChannels, long kernel, long stride, long padding, Device? device) =>
        nn.Conv2d(inChannels, outChannels, kernel, stride, padding, device: device);

    public static GroupNorm GroupNorm(int channels, Device? device) => nn.GroupNorm(Config.VqVaeConfig.NormGroups, channels, eps: 1e-6, affine: true, device: device);
}
