using System.CommandLine;
using VarSharp.Checkpoints;

namespace VarSharp.Cli.Commands;

/// <summary>
/// The checks a verb runs on an output file before it does any work: a run of minutes or hours must not end on a path
/// it cannot write, and no output may replace its own input, land inside a model bundle (whose manifest would then
/// refuse it) or replace an existing file unless --force says so.
/// </summary>
internal static class OutputFile
{
    public static Option<bool> ForceOption() => new("--force") { Description = "Replace output files that already exist" };

    /// <summary>Returns the full path of <paramref name="path"/>, or throws a one-sentence error naming the problem.</summary>
    public static string Check(string path, bool force, params string?[] inputs)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new VarSharpException("The output is an empty path; name a file to write.");
        var full = Path.GetFullPath(path);
        PathErrors.CheckOutput(full);
        if (Directory.Exists(full)) throw new VarSharpException($"{full} is a folder; give the name of the file to write.");
        if (PathErrors.FileAncestor(full) is { } blocker) throw new VarSharpException($"Cannot write {full}: {blocker} is a file, not a folder.");
        foreach (var input in inputs)
            if (input is not null && SameFile(full, Path.GetFullPath(input)))
                throw new VarSharpException($"The output {full} is also an input of this command; write it elsewhere.");
        ModelBundle.CheckOutsideBundles(Path.GetDirectoryName(full)!, "The output's folder");
        if (File.Exists(full) && !force) throw new VarSharpException($"{full} already exists; pass --force to replace it.");
        return full;
    }

    // Through symbolic links: a link to the input is the input.
    private static bool SameFile(string a, string b) => string.Equals(Resolved(a), Resolved(b), StringComparison.Ordinal);

    private static string Resolved(string full)
    {
        try
        {
            return File.Exists(full) ? new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full : full;
        }
        catch (IOException)
        {
            return full;
        }
    }
}
