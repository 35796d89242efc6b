using System.CommandLine;
using VarSharp.Cli.Commands;

namespace VarSharp.Cli;

internal static class Program
{
    private static int Main(string[] args) => CliRunner.Run(args, Console.Out, Console.Error);

    /// <summary>Every verb, one line each.</summary>
    internal static RootCommand BuildRoot() => new("varsharp: VAR (Visual AutoRegressive modeling) on TorchSharp")
    {
        ReconstructCommand.Create(),
        TokenizeCommand.Create(),
        InspectCommand.Create(),
        GoldenCommand.Create(),
        SampleCommand.Create(),
        ImportCommand.Create(),
        TrainTokenizerCommand.Create(),
        TrainCommand.Create(),
        TrainClassifierCommand.Create(),
        EvalCommand.Create(),
        ServeCommand.Create(),
    };
}
