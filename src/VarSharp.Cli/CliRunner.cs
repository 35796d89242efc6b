using System.CommandLine;
using System.Reflection;

namespace VarSharp.Cli;

/// <summary>
/// Runs the CLI against any pair of writers, so tests can drive it in-process. Bad input (a <see cref="VarSharpException"/>
/// or a missing/forbidden file) exits 1 with its one-sentence message; anything else is a bug and exits 2.
/// </summary>
public static class CliRunner
{
    public const int UserError = 1;
    public const int InternalError = 2;

    public static int Run(string[] args, TextWriter output, TextWriter error) => Run(Program.BuildRoot(), args, output, error);

    /// <summary>Runs any command tree under the same error policy; lets tests exercise the policy with throwaway verbs.</summary>
    internal static int Run(Command root, string[] args, TextWriter output, TextWriter error)
    {
        var configuration = new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false };
        try
        {
            if (args.Length == 0)
            {
                root.Parse(["--help"]).Invoke(configuration);
                return UserError;
            }
            var parse = root.Parse(args);
            if (parse.Errors.Count > 0 && !AsksForHelp(args))
            {
                // One sentence and where to look, instead of System.CommandLine's full help page under the message.
                // Verbs have no sub-verbs, so the command is the root or one verb below it.
                var command = parse.CommandResult.Command;
                string path = command == root ? "" : command.Name;
                var first = parse.Errors.OrderBy(e => e.Message.StartsWith("Required command", StringComparison.Ordinal) ? 1 : 0).First();
                error.WriteLine($"error: {first.Message.TrimEnd('.')}.");
                error.WriteLine($"See: varsharp {(path.Length > 0 ? path + " " : "")}--help");
                return UserError;
            }
            return parse.Invoke(configuration);
        }
        catch (Exception wrapped)
        {
            var e = Unwrap(wrapped);
            if (IsUserError(e))
            {
                error.WriteLine($"error: {e.Message}");
                return UserError;
            }
            error.WriteLine($"error: unexpected {e.GetType().Name}: {e.Message}");
            return InternalError;
        }
    }

    private static bool AsksForHelp(string[] args) => args.Any(a => a is "--help" or "-h" or "-?" or "--version");

    private static bool IsUserError(Exception e) =>
        e is VarSharpException or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException;

    private static Exception Unwrap(Exception e) => e switch
    {
        TargetInvocationException { InnerException: { } inner } => Unwrap(inner),
        AggregateException { InnerExceptions.Count: 1 } aggregate => Unwrap(aggregate.InnerExceptions[0]),
        _ => e,
    };
}
