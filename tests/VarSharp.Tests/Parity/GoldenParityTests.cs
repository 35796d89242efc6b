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

    /// <summary>
    /// The same case with its integer vectors stored as I32 (a generator of the same format may write labels so):
    /// read as the int64 the models take, every tensor still passes.
    /// </summary>
    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void IntegerVectorsStoredAsInt32PassToo(string caseName)
    {
        using var tmp = new TempFolder();
        var source = Path.Combine(SharedData.GoldenDir, caseName);
        foreach (var f in new[] { "config.json", "weights.safetensors" }) File.CreateSymbolicLink(tmp.File(f), Path.Combine(source, f));
        var vectors = VarSharp.Checkpoints.SafeTensors.Load(Path.Combine(source, "vectors.safetensors"));
        try
        {
            var narrowed = vectors.ToDictionary(kv => kv.Key,
                kv => kv.Value.dtype == TorchSharp.torch.ScalarType.Int64 ? kv.Value.to(TorchSharp.torch.ScalarType.Int32) : kv.Value);
            Assert.Contains(narrowed.Values, t => t.dtype == TorchSharp.torch.ScalarType.Int32);
            VarSharp.Checkpoints.SafeTensors.Save(tmp.File("vectors.safetensors"), narrowed);
        }
        finally
        {
            foreach (var t in vectors.Values) t.Dispose();
        }
        using var gc = GoldenCase.Open(tmp.Path);
        var rows = GoldenRunner.Run(gc);
        var bad = rows.Where(r => r.Status is not (GoldenStatus.Pass or GoldenStatus.Input)).ToList();
        Assert.True(bad.Count == 0, "not passing: " + string.Join("; ", bad.Select(r => $"{r.Name} {r.Status} {r.Note}")));
    }
}
