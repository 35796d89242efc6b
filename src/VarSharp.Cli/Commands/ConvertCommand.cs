using System.CommandLine;
using VarSharp.Checkpoints;

namespace VarSharp.Cli.Commands;

/// <summary>`convert`: a model folder → a bundle whose transformer weights are stored in bfloat16 or float16.</summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "Model folder (bundle) to convert", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "New bundle folder", Required = true };
        var dtype = new Option<string>("--weights-dtype") { Description = "How the transformer's weights are stored: bf16 (default), f16 or f32; the tokenizer keeps its own", DefaultValueFactory = _ => "bf16" };
        var force = new Option<bool>("--force") { Description = "Replace an existing bundle at --output" };
        var trust = TrustOption.Create("Only convert a bundle signed by this public key (repeatable)");
        var command = new Command("convert", "Rewrite a model as a bundle with its transformer weights stored in bfloat16 (half the size); loading widens them again")
        {
            model, output, dtype, force, trust,
        };
        command.SetAction(parse =>
        {
            var dir = parse.GetRequiredValue(model);
            if (!Directory.Exists(dir)) throw PathErrors.FolderMissing(dir, "Model folder");
            var type = DeviceOption.ParseDType(parse.GetRequiredValue(dtype), "--weights-dtype");
            var r = ModelConvert.StoreTransformerAs(dir, parse.GetRequiredValue(output), type, parse.GetValue(force), TrustOption.Of(parse.GetValue(trust)));
            parse.InvocationConfiguration.Output.WriteLine(
                $"wrote bundle {r.OutputDir}: {r.Converted} transformer tensors stored as {parse.GetRequiredValue(dtype)}, weights {ByteSize.Format(r.BytesBefore)} → {ByteSize.Format(r.BytesAfter)}");
            return 0;
        });
        return command;
    }
}
