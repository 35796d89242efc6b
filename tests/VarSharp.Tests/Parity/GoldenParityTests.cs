using VarSharp.Parity;
using VarSharp.Tests.Support;
using Xunit.Abstractions;

namespace VarSharp.Tests.Parity;

/// <summary>Runs the golden comparison over every case folder found under ../shared/golden (discovered, not listed).</summary>
public class GoldenParityTests(ITestOutputHelper output)
{
    /// <summary>
    /// Every tensor of every case is recomputed (no "not implemented" rows) and within tolerance: tokenizer, transformer
    /// forward, sampling (ar.*) and training (var_train.*). Inputs are the only rows not compared.
    /// </summary>
    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void EveryTensorIsRecomputedAndMatches(string caseName)
    {
        using var gc = GoldenCase.Open(Path.Combine(SharedData.GoldenDir, caseName));
        var rows = GoldenRunner.Run(gc);
        output.WriteLine(GoldenTable.Format(rows));
        var missing = rows.Where(r => r.Status == GoldenStatus.NotImplemented).Select(r => r.Name).ToList();
        Assert.True(missing.Count == 0, "not implemented: " + string.Join(", ", missing));
        var bad = rows.Where(r => r.Status is not (GoldenStatus.Pass or GoldenStatus.Input)).ToList();
        Assert.True(bad.Count == 0, "not passing: " + string.Join("; ", bad.Select(r => $"{r.Name} {r.Status} abs={r.MaxAbs:g3} limit={r.Limit:g3} {r.Note}")));
        foreach (var family in new[] { "vae.", "vae_train.", "var.logits", "ar.cfg", "var_train.step", "var_train.after_step" })
            Assert.Contains(rows, r => r.Name.StartsWith(family, StringComparison.Ordinal) && r.Status == GoldenStatus.Pass);
    }
}
