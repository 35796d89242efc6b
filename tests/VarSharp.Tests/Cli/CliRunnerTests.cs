using System.CommandLine;
using VarSharp.Cli;

namespace VarSharp.Tests.Cli;

/// <summary>The exit-code policy every verb inherits: 1 for bad input, 2 for bugs, one "error:" line either way.</summary>
public class CliRunnerTests
{
    [Theory]
    [InlineData("varsharp")]
    [InlineData("missing")]
    [InlineData("folder")]
    [InlineData("denied")]
    public void BadInputExitsOne(string kind)
    {
        var run = RunThrowing(kind switch
        {
            "varsharp" => new VarSharpException("expected a config but found none."),
            "missing" => new FileNotFoundException("expected a file but found none."),
            "folder" => new DirectoryNotFoundException("expected a folder but found none."),
            _ => new UnauthorizedAccessException("expected access but found none."),
        });

        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith("error: expected a", run.Error);
        Assert.Single(run.Error.TrimEnd().Split('\n'));
    }

    [Fact]
    public void UnexpectedExceptionExitsTwoWithItsMessage()
    {
        var run = RunThrowing(new InvalidOperationException("boom"));

        Assert.Equal(2, run.ExitCode);
        Assert.Contains("InvalidOperationException", run.Error);
        Assert.Contains("boom", run.Error);
    }

    /// <summary>libtorch's messages carry a C++ backtrace after their first line: only that line is shown.</summary>
    [Fact]
    public void ANativeErrorShowsItsFirstLineAndRunningOutOfMemoryIsTheUsersToFix()
    {
        const string Trace = "\nException raised from allocate at /pytorch/c10/core/impl/alloc_cpu.cpp:118 (most recent call first):\nframe #0: c10::Error::Error";
        var native = RunThrowing(new System.Runtime.InteropServices.ExternalException("shape '[2, 3]' is invalid for input of size 5" + Trace));
        Assert.Equal(2, native.ExitCode);
        Assert.Equal("error: unexpected ExternalException: shape '[2, 3]' is invalid for input of size 5", native.Error.TrimEnd());

        var oom = RunThrowing(new System.Runtime.InteropServices.ExternalException(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 bytes. Error code 12 (Cannot allocate memory)" + Trace));
        Assert.Equal(1, oom.ExitCode);
        Assert.Equal("error: out of memory (DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 bytes. Error code 12 (Cannot allocate memory)); ask for less at a time, for example a smaller --batch-size.",
            oom.Error.TrimEnd());
        Assert.Equal(1, RunThrowing(new OutOfMemoryException()).ExitCode);
    }

    [Fact]
    public void HelpNamesTheCommandVarsharpAndUnknownVerbsFail()
    {
        var help = CliRun.Of("--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("varsharp [command] [options]", help.Output);
        Assert.Contains("train-tokenizer", help.Output);
        var sample = CliRun.Of("sample", "--help");
        Assert.Contains("varsharp sample [options]", sample.Output);
        Assert.Equal(0, CliRun.Of("--version").ExitCode);
        var bogus = CliRun.Of("bogus");
        Assert.Equal(1, bogus.ExitCode);
        Assert.Contains("bogus", bogus.Error);
    }

    [Theory]
    [InlineData(new[] { "sample", "--count", "abc" }, "error: Cannot parse argument 'abc' for option '--count'", "See: varsharp sample --help")]
    [InlineData(new[] { "sample", "--bogus" }, "error: Unrecognized command or argument '--bogus'.", "See: varsharp sample --help")]
    [InlineData(new[] { "inspect" }, "error: Required argument missing for command: 'inspect'.", "See: varsharp inspect --help")]
    [InlineData(new[] { "frobnicate" }, "error: Unrecognized command or argument 'frobnicate'.", "See: varsharp --help")]
    [InlineData(new[] { "sample", "--version" }, "error: Unrecognized command or argument '--version'.", "See: varsharp sample --help")]
    public void ParseErrorsAreOneSentenceAndAPointerToTheHelp(string[] args, string sentence, string pointer)
    {
        var run = CliRun.Of(args);
        Assert.Equal(1, run.ExitCode);
        var lines = run.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(2, lines.Length);
        Assert.StartsWith(sentence, lines[0], StringComparison.Ordinal);
        Assert.Equal(pointer, lines[1]);
        Assert.DoesNotContain("Usage:", run.Output + run.Error);
    }

    [Fact]
    public void SuccessfulActionsKeepTheirExitCode()
    {
        var root = new RootCommand("test");
        var verb = new Command("ok");
        verb.SetAction(parse =>
        {
            parse.InvocationConfiguration.Output.WriteLine("fine");
            return 0;
        });
        root.Add(verb);
        var output = new StringWriter();

        Assert.Equal(0, CliRunner.Run(root, ["ok"], output, new StringWriter()));
        Assert.Equal("fine", output.ToString().Trim());
    }

    private static CliRun RunThrowing(Exception exception)
    {
        var root = new RootCommand("test");
        var verb = new Command("fail");
        verb.SetAction((Action<ParseResult>)(_ => throw exception));
        root.Add(verb);
        var output = new StringWriter();
        var error = new StringWriter();
        var code = CliRunner.Run(root, ["fail"], output, error);
        return new CliRun(code, output.ToString(), error.ToString());
    }
}
