using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using VarSharp.Training;

namespace VarSharp.Cli.Commands;

/// <summary>`status RUN`: where a training run stands, read without touching it (see <see cref="RunStatus"/>).</summary>
internal static class StatusCommand
{
    public static Command Create()
    {
        var run = new Argument<string>("run") { Description = "Run folder (the --out of train or train-tokenizer)" };
        var json = new Option<bool>("--json") { Description = "Print the status as one JSON object" };
        var command = new Command("status", "Show where a training run stands: running or not, step, latest losses and evaluation, last checkpoint, ETA") { run, json };
        command.SetAction(parse =>
        {
            var status = RunStatus.Read(parse.GetValue(run)!);
            var output = parse.InvocationConfiguration.Output;
            if (!parse.GetValue(json))
            {
                output.WriteLine(status.Describe());
                return 0;
            }
            var node = new JsonObject
            {
                ["run"] = status.RunDir,
                ["kind"] = status.Kind,
                ["state"] = status.State,
                ["step"] = status.Step,
                ["total_steps"] = status.TotalSteps,
                ["sessions"] = status.Sessions,
                ["last_train"] = status.LastTrain?.DeepClone(),
                ["last_eval"] = status.LastEval?.DeepClone(),
                ["last_checkpoint"] = status.LastCheckpoint,
                ["error"] = status.Error,
                ["steps_per_second"] = status.StepsPerSecond,
                ["eta_seconds"] = status.EtaSeconds,
            };
            output.WriteLine(node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        });
        return command;
    }
}
