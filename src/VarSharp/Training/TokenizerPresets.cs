using VarSharp.Config;

namespace VarSharp.Training;

/// <summary>Model shapes for training a tokenizer from scratch.</summary>
public static class TokenizerPresets
{
    /// <summary>
    /// Fashion-MNIST (padded to 32×32, one channel): downsample 4 (ch_mult 1,2,2) to an 8×8 latent, six scales
    /// 1,2,3,4,6,8 (130 tokens per image), 512 codes of 16 channels, one res block per level, attention at the 8×8 level.
    /// About 4.0 M parameters; one optimizer step of 32 images takes about a second on one CPU thread.
    /// </summary>
    public static VqVaeConfig FashionMnist { get; } = new()
    {
        VocabSize = 512,
        ZChannels = 16,
        Ch = 64,
        ChMult = [1, 2, 2],
        NumResBlocks = 1,
        InChannels = 1,
        VPatchNums = [1, 2, 3, 4, 6, 8],
        ShareQuantResi = 4,
        QuantResi = 0.5,
        Beta = 0.25,
    };
}
