using VarSharp.Tokenizer;
using static TorchSharp.torch;

namespace VarSharp.Sampling;

/// <summary>
/// Zero-shot in- and out-painting, as the VAR paper describes it: an image's own token pyramid is teacher-forced where
/// the image is known, and the rest is sampled, conditioned on it, at every scale. <see cref="Keep"/> marks the known
/// pixels (true) of an image of the tokenizer's size; a token of a scale is taken from the image when at least
/// <see cref="KnownThreshold"/> of its cell is known (the mask pooled as the tokens are, <see cref="KnownPerScale"/>), so
/// the coarse tokens — whose cells span known and unknown pixels — stay the image's as long as most of their area is
/// kept, which keeps the generated part consistent with its surroundings.
/// </summary>
/// <param name="Pixels">The image, channels × height × width in [−1, 1] (<see cref="Data.ImageIO.Load"/> gives that).</param>
/// <param name="Keep">Height × width, true where the image is kept.</param>
public sealed record ImageEdit(float[] Pixels, int Channels, int Size, bool[] Keep, double KnownThreshold = 0.5)
{
    /// <summary>
    /// An edit of <paramref name="image_1CHW"/> that regenerates the box [x0, x1) × [y0, y1) (in-painting), or with
    /// <paramref name="outpaint"/> everything outside it.
    /// </summary>
    public static ImageEdit Box(Tensor image_1CHW, int x0, int y0, int x1, int y1, bool outpaint = false, double knownThreshold = 0.5)
    {
        ArgumentNullException.ThrowIfNull(image_1CHW);
        if (image_1CHW.dim() != 4 || image_1CHW.shape[0] != 1 || image_1CHW.shape[2] != image_1CHW.shape[3])
            throw new VarSharpException($"an edit takes one square image (1, C, H, W), found ({string.Join(", ", image_1CHW.shape)}).");
        int c = (int)image_1CHW.shape[1], size = (int)image_1CHW.shape[2];
        if (x0 < 0 || y0 < 0 || x1 > size || y1 > size || x0 >= x1 || y0 >= y1)
            throw new VarSharpException($"the box {x0},{y0},{x1},{y1} must satisfy 0 ≤ x0 < x1 ≤ {size} and 0 ≤ y0 < y1 ≤ {size} (pixels of the {size}×{size} image).");
        var keep = new bool[size * size];
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
            {
                bool inside = x >= x0 && x < x1 && y >= y0 && y < y1;
                keep[y * size + x] = inside == outpaint;
            }
        // A scope, not `using` on the converted tensor: .to() may hand back the caller's own tensor.
        using var scope = NewDisposeScope();
        var pixels = image_1CHW.to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        return new ImageEdit(pixels, c, size, keep, knownThreshold);
    }

    /// <summary>Throws a one-sentence <see cref="VarSharpException"/> unless this edit fits <paramref name="tokenizer"/>.</summary>
    public void Validate(VqVae tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        int size = tokenizer.Config.ImageSize;
        if (Size != size || Channels != tokenizer.Config.InChannels)
            throw new VarSharpException($"the image to edit is {Channels}×{Size}×{Size} but this model's tokenizer takes {tokenizer.Config.InChannels}×{size}×{size}.");
        if (Pixels.Length != Channels * Size * Size || Keep.Length != Size * Size)
            throw new VarSharpException($"an edit of a {Channels}×{Size}×{Size} image needs {Channels * Size * Size} pixel values and {Size * Size} mask values, found {Pixels.Length} and {Keep.Length}.");
        if (!(KnownThreshold > 0 && KnownThreshold <= 1))
            throw new VarSharpException($"the known threshold must be in (0, 1], found {KnownThreshold}.");
        if (Keep.All(k => k)) throw new VarSharpException("the edit keeps every pixel, so there is nothing to generate.");
        // The mask alone (no encoding) decides whether any token is left to sample.
        var known = KnownPerScale(tokenizer.Config.VPatchNums, CPU);
        try
        {
            if (known.All(AllTrue))
                throw new VarSharpException(
                    $"the region to generate covers less than {1 - KnownThreshold:0.##} of every token's cell, so every token stays the image's; make it larger or raise the known threshold (at 1 every token that touches it is generated).");
        }
        finally
        {
            foreach (var k in known) k.Dispose();
        }
    }

    /// <summary>
    /// Per scale, which tokens the image keeps, (1, pn²) bool: those whose cell is kept for at least
    /// <see cref="KnownThreshold"/> of its area. The mask goes the tokens' way: averaged over each latent cell (the
    /// last scale, one cell per downsample² pixels), then area-pooled to each scale as the tokenizer pools its latent —
    /// for a scale that does not divide the latent (3 of 8) those cells overlap, unlike a direct pixel pooling.
    /// </summary>
    internal List<Tensor> KnownPerScale(IReadOnlyList<int> patchNums, Device device)
    {
        using var scope = NewDisposeScope();
        var keep_11HW = tensor(Keep.Select(k => k ? 1f : 0f).ToArray(), [1, 1, Size, Size]).to(device);
        int latent = patchNums[^1];
        var keep_11hw = nn.functional.adaptive_avg_pool2d(keep_11HW, [latent, latent]);
        var known = new List<Tensor>();
        foreach (var pn in patchNums)
        {
            // A small epsilon absorbs float error in the average.
            var share = (pn == latent ? keep_11hw : nn.functional.adaptive_avg_pool2d(keep_11hw, [pn, pn])).reshape(1, pn * pn);
            known.Add(share.ge(KnownThreshold - 1e-6).MoveToOuterDisposeScope());
        }
        return known;
    }

    private static bool AllTrue(Tensor mask)
    {
        using var all = mask.all();
        return all.item<bool>();
    }
}

/// <summary>
/// What <see cref="VarSampler"/> teacher-forces: per scale the image's tokens (1, pn²) and where they are known
/// (1, pn²) bool, the same for every row of a batch. Owns its tensors.
/// </summary>
public sealed class TokenConstraint : IDisposable
{
    private TokenConstraint(List<Tensor> tokens, List<Tensor> known)
    {
        Tokens = tokens;
        Known = known;
    }

    public IReadOnlyList<Tensor> Tokens { get; }
    public IReadOnlyList<Tensor> Known { get; }

    /// <summary>Tokens known per scale, for reports.</summary>
    public IReadOnlyList<long> KnownCounts
    {
        get
        {
            using var scope = NewDisposeScope();
            return Known.Select(k => k.sum().item<long>()).ToArray();
        }
    }

    /// <summary>Tokenizes the edit's image and reduces its mask to every scale of <paramref name="tokenizer"/>.</summary>
    public static TokenConstraint From(ImageEdit edit, VqVae tokenizer)
    {
        ArgumentNullException.ThrowIfNull(edit);
        edit.Validate(tokenizer);
        var device = tokenizer.Quantizer.Codebook.weight!.device;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var image = tensor(edit.Pixels, [1, edit.Channels, edit.Size, edit.Size]).to(device);
        var tokens = tokenizer.ImageToIndices(image);
        var known = edit.KnownPerScale(tokenizer.Config.VPatchNums, device).Select(k => k.MoveToOuterDisposeScope()).ToList();
        return new TokenConstraint(tokens.Select(t => t.MoveToOuterDisposeScope()).ToList(), known);
    }

    public void Dispose()
    {
        foreach (var t in Tokens) t.Dispose();
        foreach (var k in Known) k.Dispose();
    }
}
