using System.CommandLine;
using VarSharp.Checkpoints;

namespace VarSharp.Cli.Commands;

/// <summary>`--trust KEY.pub` (repeatable): load only bundles whose manifest one of these keys signed.</summary>
internal static class TrustOption
{
    public static Option<string[]> Create(string what = "Only load bundles signed by this public key (repeatable; see `varsharp keygen`, `varsharp sign`)") =>
        new("--trust") { Description = what };

    /// <summary>The trust list of the given --trust values, or null when none was given.</summary>
    public static BundleTrust? Of(string[]? keys) => keys is { Length: > 0 } ? BundleTrust.Load(keys) : null;

    /// <summary><see cref="Of(string[])"/> for options that name a model by --model DIR or by loose files: trust needs the folder.</summary>
    public static BundleTrust? ForModel(string[]? keys, string? modelDir)
    {
        var trust = Of(keys);
        if (trust is not null && modelDir is null) throw new VarSharpException("--trust checks a signed bundle, so name the model with --model DIR.");
        return trust;
    }
}
