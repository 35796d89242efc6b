namespace VarSharp.Data;

/// <summary>
/// Antialiased Lanczos (a = 3) resampling of 8-bit images, computed the way Pillow's ImagingResample does it — the
/// reference resizes with PIL's LANCZOS: a separable filter whose support widens by the scale factor when shrinking,
/// sampled at pixel centres and normalised per output pixel. Each pass's result is rounded and clipped to 8 bits, as
/// Pillow stores it; Pillow's 22-bit fixed-point weights against our doubles leave at most one level of difference
/// (<c>ResamplerPillowTests</c>).
/// </summary>
public static class Resampler
{
    private const double Support = 3.0;

    /// <summary>Resizes interleaved pixels (H, W, C) to (outH, outW, C).</summary>
    public static byte[] Resize(ReadOnlySpan<byte> pixels, int width, int height, int channels, int outWidth, int outHeight)
    {
        if (pixels.Length != width * height * channels)
            throw new ArgumentException($"expected {width * height * channels} bytes but got {pixels.Length}", nameof(pixels));
        if (outWidth <= 0 || outHeight <= 0) throw new ArgumentOutOfRangeException(nameof(outWidth), "output size must be positive");
        // Horizontal pass: (H, W, C) → (H, outW, C).
        var horizontal = new float[height * outWidth * channels];
        var (hStart, hCount, hWeights, hTaps) = Coefficients(width, outWidth);
        for (int y = 0; y < height; y++)
            for (int ox = 0; ox < outWidth; ox++)
                for (int c = 0; c < channels; c++)
                {
                    double acc = 0;
                    for (int k = 0; k < hCount[ox]; k++)
                        acc += hWeights[ox * hTaps + k] * pixels[(y * width + hStart[ox] + k) * channels + c];
                    horizontal[(y * outWidth + ox) * channels + c] = To8Bit(acc);
                }
        // Vertical pass: (H, outW, C) → (outH, outW, C).
        var result = new byte[outHeight * outWidth * channels];
        var (vStart, vCount, vWeights, vTaps) = Coefficients(height, outHeight);
        for (int oy = 0; oy < outHeight; oy++)
            for (int ox = 0; ox < outWidth; ox++)
                for (int c = 0; c < channels; c++)
                {
                    double acc = 0;
                    for (int k = 0; k < vCount[oy]; k++)
                        acc += vWeights[oy * vTaps + k] * horizontal[((vStart[oy] + k) * outWidth + ox) * channels + c];
                    result[(oy * outWidth + ox) * channels + c] = (byte)To8Bit(acc);
                }
        return result;
    }

    // Pillow stores each pass's result as 8-bit pixels (clip8 of the rounded sum): Lanczos overshoot at hard edges is cut
    // off after the first pass, not carried into the second. Rounding half up, as Pillow's fixed-point "+ 1/2, shift".
    private static float To8Bit(double value) => (float)Math.Clamp(Math.Floor(value + 0.5), 0, 255);

    /// <summary>The size torchvision's Resize(int) gives: the shorter side becomes <paramref name="shorter"/>, the longer scales (truncated).</summary>
    public static (int Width, int Height) ShorterSideTo(int width, int height, int shorter) =>
        TryShorterSideTo(width, height, shorter, long.MaxValue)
        ?? throw new ArgumentOutOfRangeException(nameof(shorter), $"a {width}×{height} image with its shorter side at {shorter} does not fit in memory");

    /// <summary>
    /// <see cref="ShorterSideTo"/>, or null when the result would hold more than <paramref name="maxPixels"/> pixels: a
    /// long, thin image (1×65536) grows by the factor its shorter side grows, far past what its file suggests.
    /// </summary>
    public static (int Width, int Height)? TryShorterSideTo(int width, int height, int shorter, long maxPixels)
    {
        long longer = (long)shorter * Math.Max(width, height) / Math.Min(width, height);
        if (longer > Array.MaxLength || longer * shorter > maxPixels) return null;
        return width <= height ? (shorter, (int)longer) : ((int)longer, shorter);
    }

    private static double Lanczos(double x)
    {
        if (x <= -Support || x >= Support) return 0;
        return Sinc(x) * Sinc(x / Support);
    }

    private static double Sinc(double x)
    {
        if (x == 0) return 1;
        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    /// <summary>Per output index: first input index, tap count and normalised weights (Pillow's precompute_coeffs).</summary>
    private static (int[] Start, int[] Count, double[] Weights, int Taps) Coefficients(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = Support * filterScale;
        int taps = (int)Math.Ceiling(support) * 2 + 1;
        var start = new int[outSize];
        var count = new int[outSize];
        var weights = new double[outSize * taps];
        for (int o = 0; o < outSize; o++)
        {
            double center = (o + 0.5) * scale;
            int xmin = Math.Max((int)(center - support + 0.5), 0);
            int xmax = Math.Min((int)(center + support + 0.5), inSize) - xmin;
            xmax = Math.Min(xmax, taps);
            double total = 0;
            for (int k = 0; k < xmax; k++)
            {
                double w = Lanczos((k + xmin - center + 0.5) / filterScale);
                weights[o * taps + k] = w;
                total += w;
            }
            if (total != 0)
                for (int k = 0; k < xmax; k++) weights[o * taps + k] /= total;
            start[o] = xmin;
            count[o] = xmax;
        }
        return (start, count, weights, taps);
    }
}
