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
}
