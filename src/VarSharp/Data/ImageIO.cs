using StbImageSharp;
using StbImageWriteSharp;
using static TorchSharp.torch;

namespace VarSharp.Data;

/// <summary>
/// PNG/JPEG in, PNG out, converting between pixels and model tensors in [−1, 1]. Grayscale files fed to an RGB model
/// are replicated over the channels; RGB files fed to a 1-channel model are converted to luma (ITU-R BT.601).
/// </summary>
public static class ImageIO
{
    /// <summary>
    /// The most pixels an input image may have (8192 × 8192). A PNG or JPEG header can claim any size in a few bytes, and
    /// the decoder allocates what it claims, so a hostile or broken file in a dataset folder could otherwise take all the
    /// memory before anything else is checked.
    /// </summary>
    public const long MaxPixels = 8192L * 8192;

    /// <summary>Reads the header's size and throws a one-sentence <see cref="VarSharpException"/> above <see cref="MaxPixels"/>; rewinds the stream.</summary>
    internal static void CheckDeclaredSize(Stream stream, string path)
    {
        if (DeclaredSize(stream) is var (w, h) && (long)w * h > MaxPixels) throw TooLarge(path, w, h);
    }

    internal static VarSharpException TooLarge(string what, int width, int height) =>
        new($"{what} declares {width}×{height} pixels, more than the {MaxPixels / 1_000_000} megapixels an input image may have.");

    internal static VarSharpException TooLargeResized(string what, int width, int height, int shorter) =>
        new($"{what} is {width}×{height} pixels, so resizing its shorter side to {shorter} would make more than the {MaxPixels / 1_000_000} megapixels an image may have.");

    /// <summary>Loads an image as (1, channels, H, W) float32 in [−1, 1].</summary>
    public static Tensor Load(string path, int channels)
    {
        if (!File.Exists(path)) throw PathErrors.FileMissing(path, "Image file");
        using var stream = OpenOrExplain(path);
        return Decode(stream, channels, path);
    }

    /// <summary>The width and height a PNG or JPEG header declares, read without decoding; null when there is no such header.</summary>
    public static (int Width, int Height)? DeclaredSize(byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        using var stream = new MemoryStream(bytes, writable: false);
        return DeclaredSize(stream);
    }

    /// <summary><see cref="DeclaredSize(byte[])"/> of a stream, which is rewound afterwards.</summary>
    internal static (int Width, int Height)? DeclaredSize(Stream stream)
    {
        try
        {
            return ImageInfo.FromStream(new EndGuardStream(stream)) is { Width: > 0, Height: > 0 } i ? (i.Width, i.Height) : null;
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IOException or NotSupportedException or IndexOutOfRangeException)
        {
            return null;
        }
        finally
        {
            stream.Position = 0;
        }
    }

    /// <summary>Decodes PNG or JPEG bytes as (1, channels, H, W) float32 in [−1, 1]; <paramref name="what"/> names them in errors.</summary>
    public static Tensor Decode(byte[] bytes, int channels, string what)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        using var stream = new MemoryStream(bytes, writable: false);
        return Decode(stream, channels, what);
    }

    private static FileStream OpenOrExplain(string path)
    {
        try
        {
            return File.OpenRead(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new VarSharpException($"{path} is not a readable PNG or JPEG image ({Reason(e)}).", e);
        }
    }

    /// <summary>
    /// Loads an image fitted to size×size as (1, channels, size, size) in [−1, 1]: the shorter side resized to
    /// <paramref name="size"/> with the data pipeline's Lanczos filter (the pipeline itself resizes to 1.125·size before
    /// cropping; a single image keeps as much of itself as fits), then the center cropped; an image already of that size
    /// is taken as it is. Returns the original width and height too.
    /// </summary>
    public static (Tensor Image, int Width, int Height) LoadFitted(string path, int channels, int size)
    {
        if (!File.Exists(path)) throw PathErrors.FileMissing(path, "Image file");
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), "the size must be positive");
        using var stream = OpenOrExplain(path);
        var image = DecodePixels(stream, channels, path);
        int w = image.Width, h = image.Height;
        byte[] pixels = image.Data;
        if (w != size || h != size)
        {
            var (nw, nh) = Resampler.TryShorterSideTo(w, h, size, MaxPixels) ?? throw TooLargeResized(path, w, h, size);
            pixels = Resampler.Resize(pixels, w, h, channels, nw, nh);
            // The center, rounded as the data pipeline rounds its center crop.
            int top = (int)Math.Round((nh - size) / 2.0, MidpointRounding.ToEven), left = (int)Math.Round((nw - size) / 2.0, MidpointRounding.ToEven);
            var cropped = new byte[size * size * channels];
            for (int y = 0; y < size; y++)
                Array.Copy(pixels, ((top + y) * nw + left) * channels, cropped, y * size * channels, size * channels);
            pixels = cropped;
        }
        using var chw = FromPixels(pixels, channels, size, size);
        return (chw.unsqueeze(0), w, h);
    }

    private static Tensor Decode(Stream stream, int channels, string what)
    {
        var image = DecodePixels(stream, channels, what);
        using var chw = FromPixels(image.Data, channels, image.Height, image.Width);
        return chw.unsqueeze(0);
    }

    private static ImageResult DecodePixels(Stream stream, int channels, string what)
    {
        ImageResult image;
        try
        {
            image = DecodeUnchecked(stream, channels, what);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IOException or InvalidDataException or NotSupportedException or IndexOutOfRangeException)
        {
            throw new VarSharpException($"{what} is not a readable PNG or JPEG image ({Reason(e)}).", e);
        }
        if (image is null || image.Width <= 0 || image.Height <= 0 || image.Data is null)
            throw new VarSharpException($"{what} is not a readable PNG or JPEG image (no pixels).");
        return image;
    }

    /// <summary>Converts an image (C, H, W) in [−1, 1] (values outside are clamped) to 8-bit and writes a PNG atomically.</summary>
    public static void SavePng(string path, Tensor img_CHW) => WriteAtomically(path, EncodePng(img_CHW));

    /// <summary>Converts an image (C, H, W) in [−1, 1] (values outside are clamped) to 8-bit and encodes it as PNG bytes.</summary>
    public static byte[] EncodePng(Tensor img_CHW)
    {
        var (pixels, c, h, w) = ToPixels(img_CHW);
        return EncodePng(pixels, c, h, w);
    }

    /// <summary>Encodes 8-bit pixels in (H, W, C) order (C = 1 or 3) as PNG bytes.</summary>
    public static byte[] EncodePng(byte[] pixels_HWC, int channels, int height, int width)
    {
        ArgumentNullException.ThrowIfNull(pixels_HWC);
        if (channels is not (1 or 3) || pixels_HWC.Length != (long)channels * height * width)
            throw new VarSharpException($"Expected {channels}×{height}×{width} 8-bit pixels with 1 or 3 channels but got {pixels_HWC.Length} bytes.");
        using var stream = new MemoryStream();
        new ImageWriter().WritePng(pixels_HWC, width, height, channels == 1 ? StbImageWriteSharp.ColorComponents.Grey : StbImageWriteSharp.ColorComponents.RedGreenBlue, stream);
        return stream.ToArray();
    }

    /// <summary>An image (C, H, W) in [−1, 1] (values outside are clamped) as 8-bit pixels in (H, W, C) order.</summary>
    public static (byte[] Pixels, int Channels, int Height, int Width) ToPixels(Tensor img_CHW)
    {
        if (img_CHW.dim() != 3 || img_CHW.shape[0] is not (1 or 3))
            throw new VarSharpException($"Expected an image tensor (1 or 3, H, W) but got ({string.Join(", ", img_CHW.shape)}).");
        int c = (int)img_CHW.shape[0], h = (int)img_CHW.shape[1], w = (int)img_CHW.shape[2];
        using var scope = NewDisposeScope();
        var u8 = Levels(img_CHW.detach().cpu().to(float32)).to(ScalarType.Byte);
        return (u8.permute(1, 2, 0).contiguous().data<byte>().ToArray(), c, h, w);
    }

    /// <summary>
    /// Images in [−1, 1] (any shape; values outside are clamped) rounded to the 256 levels a PNG keeps, still in [−1, 1]:
    /// what <see cref="FromPixels"/>(<see cref="ToPixels"/>(x)) gives, without leaving the tensor.
    /// </summary>
    public static Tensor As8Bit(Tensor images)
    {
        using var levels = Levels(images);
        return levels.div(127.5).sub_(1);
    }

    /// <summary>[−1, 1] → the nearest of the levels 0 … 255 (as floats).</summary>
    private static Tensor Levels(Tensor x)
    {
        using var scope = NewDisposeScope();
        return x.clamp(-1, 1).add(1).mul(127.5).round().MoveToOuterDisposeScope();
    }

    /// <summary>8-bit pixels in (H, W, C) order back to a tensor (C, H, W) in [−1, 1] (exact inverse of <see cref="ToPixels"/> on 8-bit values).</summary>
    public static Tensor FromPixels(byte[] pixels_HWC, int channels, int height, int width)
    {
        using var hwc = tensor(pixels_HWC, [height, width, channels], dtype: ScalarType.Byte);
        using var chw = hwc.permute(2, 0, 1).to(float32);
        return chw.div(127.5).sub_(1);
    }

    /// <summary>Writes bytes to a temporary file beside <paramref name="path"/> and renames it into place.</summary>
    public static void WriteAtomically(string path, byte[] bytes) => AtomicFile.Write(path, bytes);

    /// <summary>
    /// The decoder behind every image read: declared size, then structure (<see cref="ImageContainer"/>), then
    /// StbImageSharp on a stream that stops it spinning past the end. Its exceptions are left to the caller, which
    /// turns them into an error or skips the file.
    /// </summary>
    internal static ImageResult DecodeUnchecked(Stream stream, int channels, string what)
    {
        CheckDeclaredSize(stream, what);
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        var data = copy.ToArray();
        ImageContainer.Check(data);
        return ImageResult.FromStream(new EndGuardStream(new MemoryStream(data, writable: false)),
            channels == 1 ? StbImageSharp.ColorComponents.Grey : StbImageSharp.ColorComponents.RedGreenBlue);
    }

    /// <summary>
    /// An exception's message fit for the middle of a one-sentence error: control characters (a decoder's message can
    /// hold NUL bytes) removed, the final full stop dropped, and a plain reason when nothing readable is left.
    /// </summary>
    public static string Reason(Exception e)
    {
        var text = new string(e.Message.Where(ch => !char.IsControl(ch)).ToArray()).Trim().TrimEnd('.').Trim();
        return text.Length == 0 ? "the data is truncated or corrupt" : text;
    }

    /// <summary>Tiles a batch (B, C, H, W) into one image (C, H', W') with `columns` per row and a padding of value −1 (black).</summary>
    public static Tensor Grid(Tensor batch_BCHW, int columns, int padding = 2)
    {
        long b = batch_BCHW.shape[0], c = batch_BCHW.shape[1], h = batch_BCHW.shape[2], w = batch_BCHW.shape[3];
        columns = (int)Math.Max(1, Math.Min(columns, b));
        long rows = (b + columns - 1) / columns;
        var grid = full([c, rows * (h + padding) + padding, columns * (w + padding) + padding], -1f, dtype: float32);
        using var noGrad = no_grad();
        for (long i = 0; i < b; i++)
        {
            long r = i / columns, col = i % columns;
            long top = padding + r * (h + padding), left = padding + col * (w + padding);
            using var src = batch_BCHW[i].detach().cpu().to(float32);
            using var dst = grid[.., TensorIndex.Slice(top, top + h), TensorIndex.Slice(left, left + w)];
            dst.copy_(src);
        }
        return grid;
    }
}
