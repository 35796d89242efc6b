using VarSharp.Parity;
using VarSharp.Tests.Support;
using Xunit.Abstractions;

namespace VarSharp.Tests.Parity;

/// <summary>Runs the golden comparison over every case folder found under ../shared/golden (discovered, not listed).</summary>
public class GoldenParityTests(ITestOutputHelper output)
{
    private static bool IsTokenizerTensor(string name) =>
        name.StartsWith("vae.", StringComparison.Ordinal) || name.StartsWith("vae_train.", StringComparison.Ordinal)
        || name is "var.x_BLCv_wo_first_l" or "var.gt_BL";

    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void EveryTokenizerTensorMatchesTheReference(string caseName)
    {
        using var gc = GoldenCase.Open(Path.Combine(SharedData.GoldenDir, caseName));
        var rows = GoldenRunner.Run(gc);
        output.WriteLine(GoldenTable.Format(rows));
        var tokenizerRows = rows.Where(r => IsTokenizerTensor(r.Name)).ToList();
        Assert.NotEmpty(tokenizerRows);
        var bad = tokenizerRows.Where(r => r.Status != GoldenStatus.Pass).ToList();
        Assert.True(bad.Count == 0, "not passing: " + string.Join("; ", bad.Select(r => $"{r.Name} {r.Status} abs={r.MaxAbs:g3} limit={r.Limit:g3} {r.Note}")));
        Assert.DoesNotContain(rows, r => r.Failed);
    }
}
