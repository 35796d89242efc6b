using System.CommandLine;
using System.Globalization;
using VarSharp.Data;
using VarSharp.Evaluation;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>`reconstruct`: image → tokens at every scale → image, through a tokenizer.</summary>
internal static class ReconstructCommand
{
    public static Command Create()
    {
        var tokenizer = new TokenizerOptions();
        var input = new Option<string>("--input", "-i") { Description = "PNG or JPEG image of the tokenizer's size", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "PNG file to write", Required = true };
        var scales = new Option<bool>("--scales") { Description = "Also write OUTPUT-scales.png: the image decoded after every scale, coarse to fine" };
        var resize = InputImage.ResizeOption();
        var force = OutputFile.ForceOption();
        var command = new Command("reconstruct", "Encode an image to its token pyramid and decode it back") { input, output, scales, resize, force };
        tokenizer.AddTo(command);
        command.SetAction(parse =>
        {
            var inPath = parse.GetRequiredValue(input);
            var outPath = OutputFile.Check(parse.GetRequiredValue(output), parse.GetValue(force), tokenizer.Inputs(parse, inPath));
            var stripPath = Path.Combine(Path.GetDirectoryName(outPath)!, Path.GetFileNameWithoutExtension(outPath) + "-scales.png");
            if (parse.GetValue(scales)) OutputFile.Check(stripPath, parse.GetValue(force), [.. tokenizer.Inputs(parse, inPath), outPath]);
            using var vae = tokenizer.Load(parse);
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var img = InputImage.Load(inPath, vae.Config.InChannels, vae.Config.ImageSize, parse.GetValue(resize),
                parse.InvocationConfiguration.Output).to(vae.Device);
            vae.CheckImage(img);
            var idx = vae.ImageToIndices(img);
            var perScale = vae.IndicesToImages(idx, lastOnly: false);
            var rec = perScale[^1];
            ImageIO.SavePng(outPath, rec[0]);
            var writer = parse.InvocationConfiguration.Output;
            writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {outPath} ({vae.Config.ImageSize}x{vae.Config.ImageSize}, {idx.Sum(t => t.shape[1])} tokens over {idx.Count} scales, PSNR {ImageMetrics.Psnr(rec, img):0.00} dB)"));
            if (parse.GetValue(scales))
            {
                var strip = ImageIO.Grid(cat(perScale.Prepend(img).ToArray(), 0), columns: perScale.Count + 1);
                ImageIO.SavePng(stripPath, strip);
                writer.WriteLine($"wrote {stripPath} (input, then the image after each of the scales {string.Join(",", vae.Config.VPatchNums)})");
            }
            return 0;
        });
        return command;
    }
}
