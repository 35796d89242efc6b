using System.CommandLine;
using VarSharp.Checkpoints;

namespace VarSharp.Cli.Commands;

internal static class InspectCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("file") { Description = "A .safetensors file" };
        var noDigest = new Option<bool>("--no-digest") { Description = "Skip the SHA-256 (it reads the whole file)" };
        var json = new Option<bool>("--json") { Description = "Print machine-readable JSON instead of a table" };
        var command = new Command("inspect", "List the tensors, metadata and SHA-256 of a safetensors file") { file, noDigest, json };
        command.SetAction(parse =>
        {
            var path = parse.GetRequiredValue(file);
            var header = SafeTensors.ReadHeader(path);
            var digest = parse.GetValue(noDigest) ? null : FileDigest.Sha256(path);
            var output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(json)) InspectOutput.WriteJson(output, path, header, digest);
            else InspectOutput.WriteTable(CliConsole.For(output), path, header, digest);
            return 0;
        });
        return command;
    }
}
