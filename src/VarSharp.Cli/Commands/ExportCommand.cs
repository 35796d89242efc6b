using System.CommandLine;
using VarSharp.Checkpoints;

namespace VarSharp.Cli.Commands;

/// <summary>`export`: a VarSharp model folder → vae.pth / var.pth that the official PyTorch code loads.</summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "Model folder (bundle) to export", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "Folder for vae.pth, var.pth and export.json", Required = true };
        var force = new Option<bool>("--force") { Description = "Replace an earlier export in --output" };
        var trust = TrustOption.Create("Only export a bundle signed by this public key (repeatable)");
        var command = new Command("export", "Export a model to PyTorch checkpoints (vae.pth, var.pth) that the official VAR code loads with load_state_dict")
        {
            model, output, force, trust,
        };
        command.SetAction(parse =>
        {
            var dir = parse.GetRequiredValue(model);
            if (!Directory.Exists(dir)) throw PathErrors.FolderMissing(dir, "Model folder");
            var result = PyTorchExport.Run(dir, parse.GetRequiredValue(output), parse.GetValue(force), TrustOption.Of(parse.GetValue(trust)));
            var writer = parse.InvocationConfiguration.Output;
            foreach (var f in new[] { result.Vae, result.Var })
                if (f is not null) writer.WriteLine($"wrote {f.Path}: {f.Tensors} tensors, {ByteSize.Format(f.Bytes)}, sha256 {f.Sha256}");
            writer.WriteLine($"wrote {Path.Combine(result.OutputDir, PyTorchExport.ReportFile)}");
            writer.WriteLine("in Python (the official repository's models package):");
            if (result.VqVaeCall is not null)
            {
                writer.WriteLine($"  vae = {result.VqVaeCall}");
                writer.WriteLine($"  vae.load_state_dict(torch.load('{PyTorchExport.VaeFile}', map_location='cpu', weights_only=True), strict=True)");
            }
            if (result.VarCall is not null)
            {
                writer.WriteLine($"  var = {result.VarCall}");
                writer.WriteLine($"  var.load_state_dict(torch.load('{PyTorchExport.VarFile}', map_location='cpu', weights_only=True), strict=True)");
            }
            if (result.VqVaeDifferences.Count > 0)
                writer.WriteLine($"note: the official VQVAE fixes its encoder/decoder config; this tokenizer differs in {string.Join(", ", result.VqVaeDifferences)}, so build it with a ddconfig that matches.");
            return 0;
        });
        return command;
    }
}
