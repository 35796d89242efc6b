using Spectre.Console;

namespace VarSharp.Cli;

/// <summary>Spectre.Console bound to the writer a command was given, instead of the process console.</summary>
internal static class CliConsole
{
    // Piped or captured output has no terminal width; a wide fixed width keeps long tensor names on one line.
    private const int RedirectedWidth = 200;

    public static IAnsiConsole For(TextWriter writer)
    {
        var isTerminal = ReferenceEquals(writer, Console.Out) && !Console.IsOutputRedirected;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = isTerminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = isTerminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = isTerminal ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (!isTerminal) console.Profile.Width = RedirectedWidth;
        return console;
    }
}
