using System.CommandLine;
using VarSharp.Cli.Commands;

namespace VarSharp.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        var signals = LongRun.Signals.Install();
        try
        {
            return CliRunner.Run(args, Console.Out, Console.Error);
        }
        finally
        {
            foreach (var s in signals) s.Dispose();
        }
    }

    /// <summary>
    /// Every verb, one line each. A plain command named "varsharp" rather than a RootCommand, whose name would be the
    /// entry assembly's (VarSharp.Cli) in every usage line; it gets RootCommand's help and version options by hand.
    /// </summary>
    internal static Command BuildRoot() => new("varsharp", "varsharp: VAR (Visual AutoRegressive modeling) on TorchSharp")
    {
        new System.CommandLine.Help.HelpOption(),
        new VersionOption(),
        ReconstructCommand.Create(),
        TokenizeCommand.Create(),
        InspectCommand.Create(),
        GoldenCommand.Create(),
        SampleCommand.Create(),
        ImportCommand.Create(),
        ExportCommand.Create(),
        ConvertCommand.Create(),
        TrainTokenizerCommand.Create(),
        TrainCommand.Create(),
        TrainClassifierCommand.Create(),
        EvalCommand.Create(),
        StatusCommand.Create(),
        RecommendCommand.Create(),
        BenchCommand.Create(),
        ServeCommand.Create(),
        SigningCommands.KeyGen(),
        SigningCommands.Sign(),
        SigningCommands.Verify(),
    };
}
