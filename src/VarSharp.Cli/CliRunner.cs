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
                error.WriteLine($"error: {FriendlyTypes(first.Message).TrimEnd('.')}.");
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
                error.WriteLine($"error: {Sentence(e)}");
                return UserError;
            }
            if (IsOutOfMemory(e))
            {
                error.WriteLine($"error: out of memory ({FirstLine(e.Message).TrimEnd('.')}); ask for less at a time, for example a smaller --batch-size.");
                return UserError;
            }
            // The first line only: libtorch's messages go on with a C++ backtrace.
            error.WriteLine($"error: unexpected {e.GetType().Name}: {FirstLine(e.Message)}");
            return InternalError;
        }
    }

    // System.CommandLine names the .NET type it could not parse into; say what a user would call it.
    private static string FriendlyTypes(string message) => System.Text.RegularExpressions.Regex.Replace(message,
        @"(?:as expected type )?(?:'System\.Nullable`1\[(System\.\w+)\]'|'(System\.\w+)')", m => (m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value) switch
        {
            "System.Int32" or "System.Int64" or "System.UInt64" => "as an integer",
            "System.Double" => "as a number",
            "System.Boolean" => "as true or false",
            var other => other,
        });

    // --version belongs to the root alone: `sample --version` is an unknown option, not a request for the version.
    private static bool AsksForHelp(string[] args) => args.Any(a => a is "--help" or "-h" or "-?") || args is ["--version"];

    // File-system trouble (a full disk, a path through a file, no permission) is the user's to fix, not a bug.
    private static bool IsUserError(Exception e) =>
        e is VarSharpException or IOException or UnauthorizedAccessException || EmptyPath(e);

    // .NET's path APIs refuse an empty path with this exception; every path option reaches one of them.
    private static bool EmptyPath(Exception e) => e is ArgumentException { ParamName: "path" };

    private static string Sentence(Exception e) =>
        EmptyPath(e) ? "an empty path was given where a file or folder is expected." : OneLine(e.Message);

    // A request too large for the machine is the user's to change, whether .NET or libtorch's allocator says so.
    private static bool IsOutOfMemory(Exception e) => e is OutOfMemoryException
        || (e is System.Runtime.InteropServices.ExternalException && e.Message.Contains("can't allocate memory", StringComparison.Ordinal));

    private static string FirstLine(string message) => message.Split('\n', 2)[0].Trim();

    private static string OneLine(string message) =>
        string.Join(" ", message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    private static Exception Unwrap(Exception e) => e switch
    {
        TargetInvocationException { InnerException: { } inner } => Unwrap(inner),
        AggregateException { InnerExceptions.Count: 1 } aggregate => Unwrap(aggregate.InnerExceptions[0]),
        _ => e,
    };
}
