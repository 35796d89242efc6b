using VarSharp.Cli;

namespace VarSharp.Tests.Cli;

/// <summary>What one in-process CLI invocation returned and printed.</summary>
internal sealed record CliRun(int ExitCode, string Output, string Error)
{
    public static CliRun Of(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = CliRunner.Run(args, output, error);
        return new CliRun(code, output.ToString(), error.ToString());
    }
}
