using VarSharp.Config;

namespace VarSharp.Tests.Support;

/// <summary>Configs small enough that a forward pass takes milliseconds.</summary>
public static class TinyConfigs
{
    /// <summary>8×8 RGB images, latent 4×4, scales 1,2,3,4, partially shared φ (K=2).</summary>
    public static VqVaeConfig VqVae(int shareQuantResi = 2, bool znorm = false) => new()
    {
        VocabSize = 16,
        ZChannels = 4,
        Ch = 32,
        ChMult = [1, 2],
        NumResBlocks = 1,
        VPatchNums = [1, 2, 3, 4],
        ShareQuantResi = shareQuantResi,
        UsingZnorm = znorm,
    };
}
