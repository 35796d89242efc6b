using Spectre.Console;

namespace VarSharp.Cli;

/// <summary>Spectre.Console bound to the writer a command was given, instead of the process console.</summary>
internal static class CliConsole
{
    // Piped or captured output has no terminal width; a wide fixed width keeps long tensor names on one line.
    private const int RedirectedWidth = 200;

    /// <summary>True when <paramref name="writer"/> is the process's stdout and that is a terminal (not piped or captured).</summary>
    public static bool IsTerminal(TextWriter writer) => ReferenceEquals(writer, Console.Out) && !Console.IsOutputRedirected;

    public static IAnsiConsole For(TextWriter writer)
    {
        var isTerminal = IsTerminal(writer);
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
