using System.CommandLine;
using System.Globalization;
using VarSharp.Checkpoints;

namespace VarSharp.Cli.Commands;

/// <summary>`import`: official PyTorch checkpoints → a verified VarSharp bundle, without executing the checkpoints.</summary>
internal static class ImportCommand
{
    public static Command Create()
    {
        var vae = new Option<string?>("--vae") { Description = "VQ-VAE checkpoint, e.g. vae_ch160v4096z32.pth" };
        var var = new Option<string?>("--var") { Description = "VAR checkpoint, e.g. var_d16.pth" };
        var output = new Option<string>("--output", "-o") { Description = "Bundle folder to create (config.json, model.safetensors, manifest.json)", Required = true };
        var force = new Option<bool>("--force") { Description = "Replace an existing bundle at --output" };
        var patchNums = new Option<string?>("--patch-nums") { Description = "Scales, e.g. 1,2,3,4,5,6,8,10,13,16; needed when the checkpoints do not determine them" };
        var depth = new Option<int?>("--depth") { Description = "Expected VAR depth (checked against the checkpoint)" };
        var heads = new Option<int?>("--heads") { Description = "VAR attention heads (read from the weights when attn_l2_norm; otherwise depth for official widths)" };
        var quantResi = new Option<double?>("--quant-resi") { Description = "Phi mixing ratio of the VQ-VAE (default 0.5 when it has Phi convs)" };
        var znorm = new Option<bool>("--znorm") { Description = "The VQ-VAE searches codes by cosine similarity (not recorded in the weights)" };
        var sign = new Option<string?>("--sign") { Description = "Also sign the bundle with this private key (`varsharp keygen`), as `varsharp sign` does" };
        var command = new Command("import", "Import official PyTorch checkpoints (.pth) into a VarSharp bundle without executing them")
        {
            vae, var, output, force, patchNums, depth, heads, quantResi, znorm, sign,
        };
        command.SetAction(parse =>
        {
            // An option about the checkpoint that is not given would be silently ignored.
            Option? stray = parse.GetValue(var) is null ? new Option[] { depth, heads }.FirstOrDefault(o => parse.GetResult(o) is { Implicit: false }) : null;
            stray ??= parse.GetValue(vae) is null ? new Option[] { quantResi, znorm }.FirstOrDefault(o => parse.GetResult(o) is { Implicit: false }) : null;
            if (stray is not null)
                throw new VarSharpException($"{stray.Name} describes the {(stray == depth || stray == heads ? "--var" : "--vae")} checkpoint, which is not given; leave it out or give the checkpoint.");
            var options = new ImportOptions
            {
                PatchNums = ParsePatchNums(parse.GetValue(patchNums)),
                Depth = parse.GetValue(depth),
                Heads = parse.GetValue(heads),
                QuantResi = parse.GetValue(quantResi),
                UsingZnorm = parse.GetValue(znorm),
            };
            // A key that cannot sign is refused before the import, not after it has written an unsigned bundle.
            var key = parse.GetValue(sign);
            if (key is not null) BundleSignature.SigningKeyId(key);
            var result = CheckpointImport.Run(parse.GetValue(vae), parse.GetValue(var), parse.GetRequiredValue(output), options, parse.GetValue(force), signWith: key);
            var writer = parse.InvocationConfiguration.Output;
            writer.WriteLine($"wrote bundle {result.OutputDir}: {result.TensorCount} tensors, {ByteSize.Format(result.TensorBytes)}");
            if (key is not null) writer.WriteLine($"  signed with key {BundleSignature.SigningKeyId(key)}");
            if (result.VqVae is { } q)
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  vqvae: V {q.VocabSize}, Cvae {q.ZChannels}, ch {q.Ch}, ch_mult [{string.Join(",", q.ChMult)}], res blocks {q.NumResBlocks}, share_quant_resi {q.ShareQuantResi}, quant_resi {q.QuantResi}, patch_nums [{string.Join(",", q.VPatchNums)}]"));
            if (result.Var is { } v) writer.WriteLine($"  var: {v}");
            return 0;
        });
        return command;
    }

    private static int[]? ParsePatchNums(string? text)
    {
        if (text is null) return null;
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out result[i]) || result[i] < 1)
                throw new VarSharpException($"--patch-nums expects positive integers separated by commas, e.g. 1,2,3,4,5,6,8,10,13,16, but got '{text}'.");
        return result;
    }
}
