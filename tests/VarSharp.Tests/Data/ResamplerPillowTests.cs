using VarSharp.Data;

namespace VarSharp.Tests.Data;

/// <summary>
/// Our Lanczos resampler against Pillow's (the reference resizes with PIL's LANCZOS): images made from a formula,
/// resized here and by Pillow (scripts/pillow-resize-fixtures.py wrote Pillow's results), agree within one level —
/// hard edges and noise included, where Lanczos overshoots and the 8-bit rounding between the passes matters.
/// </summary>
public class ResamplerPillowTests
{
    // The same pixels as the script's pattern(): RGB, row-major.
    private static byte[] Pattern(string kind, int w, int h)
    {
        var pixels = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++)
                    pixels[(y * w + x) * 3 + c] = kind == "checker"
                        ? (byte)(((x / 4) + (y / 4) + c) % 2 == 0 ? 255 : 0)
                        : (byte)((((long)x * 73856093) ^ ((long)y * 19349663) ^ ((long)c * 83492791)) % 251);
        return pixels;
    }

    [Theory]
    [InlineData("checker", 80, 60, 48, 36)]
    [InlineData("noise", 30, 24, 45, 36)]
    [InlineData("noise", 64, 48, 20, 15)]
    public void ResizesLikePillowWithinOneLevel(string kind, int w, int h, int ow, int oh)
    {
        var ours = Resampler.Resize(Pattern(kind, w, h), w, h, 3, ow, oh);
        var file = Path.Combine(AppContext.BaseDirectory, "Data", "pillow", $"{kind}-{w}x{h}-to-{ow}x{oh}.png");
        var pillow = StbImageSharp.ImageResult.FromMemory(File.ReadAllBytes(file), StbImageSharp.ColorComponents.RedGreenBlue).Data;
        Assert.Equal(pillow.Length, ours.Length);
        int worst = 0, off = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            int d = Math.Abs(ours[i] - pillow[i]);
            worst = Math.Max(worst, d);
            if (d > 0) off++;
        }
        Assert.True(worst <= 1, $"{kind} {w}x{h}→{ow}x{oh}: largest difference {worst} levels, {off} of {ours.Length} values differ");
    }
}
