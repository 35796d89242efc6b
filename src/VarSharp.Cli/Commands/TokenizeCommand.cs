using System.CommandLine;
using System.Text;
using System.Text.Json;
using VarSharp.Data;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>`tokenize`: prints (or saves as JSON) the token pyramid of an image.</summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var tokenizer = new TokenizerOptions();
        var input = new Option<string>("--input", "-i") { Description = "PNG or JPEG image of the tokenizer's size", Required = true };
        var output = new Option<string?>("--output", "-o") { Description = "Write the pyramid as JSON here instead of printing it" };
        var resize = InputImage.ResizeOption();
        var force = OutputFile.ForceOption();
        var command = new Command("tokenize", "Print or save the token pyramid (one pn×pn map per scale) of an image") { input, output, resize, force };
        tokenizer.AddTo(command);
        command.SetAction(parse =>
        {
            var outPath = parse.GetValue(output) is { } o ? OutputFile.Check(o, parse.GetValue(force), tokenizer.Inputs(parse, parse.GetRequiredValue(input))) : null;
            using var vae = tokenizer.Load(parse);
            using var noGrad = no_grad();
            List<long[]> pyramid;
            using (NewDisposeScope())
            {
                var img = InputImage.Load(parse.GetRequiredValue(input), vae.Config.InChannels, vae.Config.ImageSize, parse.GetValue(resize),
                    parse.InvocationConfiguration.Output).to(vae.Device);
                pyramid = vae.ImageToIndices(img).Select(t => t[0].cpu().data<long>().ToArray()).ToList();
            }
            var patchNums = vae.Config.VPatchNums;
            var writer = parse.InvocationConfiguration.Output;
            if (outPath is not null)
            {
                var json = JsonSerializer.Serialize(new { vocab_size = vae.Config.VocabSize, patch_nums = patchNums, scales = pyramid });
                ImageIO.WriteAtomically(outPath, Encoding.UTF8.GetBytes(json));
                writer.WriteLine($"wrote {outPath} ({pyramid.Sum(p => p.Length)} tokens over {pyramid.Count} scales)");
                return 0;
            }
            writer.Write(Format(patchNums, pyramid, vae.Config.VocabSize));
            return 0;
        });
        return command;
    }

    public static string Format(int[] patchNums, IReadOnlyList<long[]> pyramid, int vocab)
    {
        int width = (vocab - 1).ToString(System.Globalization.CultureInfo.InvariantCulture).Length;
        var sb = new StringBuilder();
        for (int si = 0; si < pyramid.Count; si++)
        {
            int pn = patchNums[si];
            sb.Append("scale ").Append(si).Append(" (").Append(pn).Append('x').Append(pn).AppendLine("):");
            for (int r = 0; r < pn; r++)
                sb.Append("  ").AppendLine(string.Join(" ", Enumerable.Range(0, pn).Select(c => pyramid[si][r * pn + c].ToString(System.Globalization.CultureInfo.InvariantCulture).PadLeft(width))));
        }
        return sb.ToString();
    }
}
