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
    /// <summary>Loads an image as (1, channels, H, W) float32 in [−1, 1].</summary>
    public static Tensor Load(string path, int channels)
    {
        if (!File.Exists(path)) throw new VarSharpException($"Image file {path} does not exist.");
        ImageResult image;
        try
        {
            using var stream = File.OpenRead(path);
            image = ImageResult.FromStream(stream, channels == 1 ? StbImageSharp.ColorComponents.Grey : StbImageSharp.ColorComponents.RedGreenBlue);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IOException or NotSupportedException or IndexOutOfRangeException)
        {
            throw new VarSharpException($"{path} is not a readable PNG or JPEG image ({e.Message.TrimEnd('.')}).", e);
        }
        if (image.Width <= 0 || image.Height <= 0 || image.Data is null)
            throw new VarSharpException($"{path} is not a readable PNG or JPEG image (no pixels).");
        using var hwc = tensor(image.Data, [image.Height, image.Width, channels], dtype: ScalarType.Byte);
        using var chw = hwc.permute(2, 0, 1).to(float32);
        return chw.div(127.5).sub_(1).unsqueeze(0);
    }

    /// <summary>Converts an image (C, H, W) in [−1, 1] (values outside are clamped) to 8-bit and writes a PNG atomically.</summary>
    public static void SavePng(string path, Tensor img_CHW)
    {
        if (img_CHW.dim() != 3 || img_CHW.shape[0] is not (1 or 3))
            throw new VarSharpException($"Expected an image tensor (1 or 3, H, W) but got ({string.Join(", ", img_CHW.shape)}).");
        int c = (int)img_CHW.shape[0], h = (int)img_CHW.shape[1], w = (int)img_CHW.shape[2];
        byte[] pixels;
        using (NewDisposeScope())
        {
            var u8 = img_CHW.detach().cpu().to(float32).clamp(-1, 1).add(1).mul(127.5).round().to(ScalarType.Byte);
            pixels = u8.permute(1, 2, 0).contiguous().data<byte>().ToArray();
        }
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            new ImageWriter().WritePng(pixels, w, h, c == 1 ? StbImageWriteSharp.ColorComponents.Grey : StbImageWriteSharp.ColorComponents.RedGreenBlue, stream);
            stream.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
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
