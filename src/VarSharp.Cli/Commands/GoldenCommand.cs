using System.CommandLine;
using VarSharp.Parity;

namespace VarSharp.Cli.Commands;

/// <summary>`golden DIR`: recompute a golden case from its config alone and compare every tensor with the reference.</summary>
internal static class GoldenCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("dir") { Description = "A case folder in the format of shared/golden/<case>: config.json, weights, vectors.safetensors" };
        var fromPth = new Option<bool>("--from-pth")
        {
            Description = "Load the weights from weights_vae.pth/weights_var.pth through the safe .pth reader instead of weights.safetensors",
        };
        var command = new Command("golden", "Check numerical parity with the reference PyTorch code on a golden case folder") { dir, fromPth };
        command.SetAction(parse =>
        {
            var path = parse.GetRequiredValue(dir);
            using var gc = GoldenCase.Open(path, parse.GetValue(fromPth) ? GoldenPthWeights.Load : null);
            var rows = GoldenRunner.Run(gc);
            var writer = parse.InvocationConfiguration.Output;
            writer.WriteLine($"golden case {gc.Name} ({gc.Directory}), weights from {(parse.GetValue(fromPth) ? $"{GoldenPthWeights.VaeFile} + {GoldenPthWeights.VarFile}" : "weights.safetensors")}");
            writer.Write(GoldenTable.Format(rows));
            // A tensor the case holds but we did not recompute is a gap, not a pass: parity means every tensor.
            int failed = rows.Count(r => r.Failed);
            int missing = rows.Count(r => r.Status == GoldenStatus.NotImplemented);
            writer.WriteLine((failed, missing) switch
            {
                (0, 0) => "PASS: every tensor recomputed and within tolerance",
                (0, _) => $"FAIL: {missing} tensor(s) of the case not recomputed (NotImplemented); every other tensor is within tolerance",
                _ => $"FAIL: {failed} tensor(s) outside tolerance{(missing > 0 ? $", {missing} not recomputed" : "")}",
            });
            return failed == 0 && missing == 0 ? 0 : 1;
        });
        return command;
    }
}
