using System.CommandLine;
using VarSharp.Data;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>An input image for a model of a given size, as given or (with --resize) fitted to it.</summary>
internal static class InputImage
{
    public static Option<bool> ResizeOption() => new("--resize")
    {
        Description = "Fit an image of another size: shorter side to the model's size (Lanczos), then the center cropped",
    };

    /// <summary>(1, C, size, size) in [−1, 1]; without <paramref name="resize"/> another size is a one-sentence error naming the option.</summary>
    public static Tensor Load(string path, int channels, int size, bool resize, TextWriter writer)
    {
        if (!resize)
        {
            var image = ImageIO.Load(path, channels);
            if (image.shape[2] == size && image.shape[3] == size) return image;
            long w = image.shape[3], h = image.shape[2];
            image.Dispose();
            throw new VarSharpException($"{path} is {w}×{h} but the model takes {size}×{size}; pass --resize to fit it (shorter side to {size}, then the center cropped).");
        }
        var (fitted, width, height) = ImageIO.LoadFitted(path, channels, size);
        if (width != size || height != size) writer.WriteLine($"resized {path} from {width}×{height} to {size}×{size} (shorter side, then the center cropped)");
        return fitted;
    }
}
