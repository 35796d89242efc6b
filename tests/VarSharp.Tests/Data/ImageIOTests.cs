using VarSharp.Data;
using static TorchSharp.torch;

namespace VarSharp.Tests.Data;

/// <summary>The 8-bit round trip that saved PNGs impose, as pixels and as tensors.</summary>
public class ImageIOTests
{
    [Fact]
    public void As8BitEqualsThePixelRoundTripAndClamps()
    {
        using var gen = new Generator(3);
        using var x = randn([2, 3, 5, 4], generator: gen).mul_(0.8);   // some values beyond ±1
        using var rounded = ImageIO.As8Bit(x);
        for (int i = 0; i < 2; i++)
        {
            var (pixels, c, h, w) = ImageIO.ToPixels(x[i]);
            using var back = ImageIO.FromPixels(pixels, c, h, w);
            Assert.True(back.eq(rounded[i]).all().item<bool>(), $"image {i} differs from its PNG round trip");
        }
        Assert.True(rounded.abs().max().item<float>() <= 1f);
        using var levels = rounded.add(1).mul(127.5);
        Assert.True(levels.sub(levels.round()).abs().max().item<float>() < 1e-4f, "values between the 256 levels");
    }
}
