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
        Variant(caseName, tmp.Path, vectors => vectors.Select(kv => KeyValuePair.Create(kv.Key,
            kv.Value.dtype == TorchSharp.torch.ScalarType.Int64 ? kv.Value.to(TorchSharp.torch.ScalarType.Int32) : kv.Value)));
        using var gc = GoldenCase.Open(tmp.Path);
        Assert.Contains(gc.Config.RootElement.GetProperty("tensors").EnumerateObject(), t => t.Value.GetProperty("dtype").GetString() == "I64");
        var rows = GoldenRunner.Run(gc);
        var bad = rows.Where(r => r.Status is not (GoldenStatus.Pass or GoldenStatus.Input)).ToList();
        Assert.True(bad.Count == 0, "not passing: " + string.Join("; ", bad.Select(r => $"{r.Name} {r.Status} {r.Note}")));
    }

    /// <summary>A vectors file that lacks a tensor its config lists fails, naming it, instead of passing with less to check.</summary>
    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void ATensorMissingFromTheVectorsFails(string caseName)
    {
        using var tmp = new TempFolder();
        Variant(caseName, tmp.Path, vectors => vectors.Where(kv => kv.Key != "vae.f"));
        using var gc = GoldenCase.Open(tmp.Path);
        var row = Assert.Single(GoldenRunner.Run(gc), r => r.Name == "vae.f");
        Assert.Equal(GoldenStatus.Fail, row.Status);
        Assert.Equal("listed in config.json's tensors but absent from vectors.safetensors", row.Note);
    }

    /// <summary>A copy of a case in <paramref name="dir"/> (config and weights linked) whose vectors <paramref name="change"/> rewrites.</summary>
    private static void Variant(string caseName, string dir, Func<IEnumerable<KeyValuePair<string, TorchSharp.torch.Tensor>>, IEnumerable<KeyValuePair<string, TorchSharp.torch.Tensor>>> change)
    {
        var source = Path.Combine(SharedData.GoldenDir, caseName);
        foreach (var f in new[] { "config.json", "weights.safetensors" }) File.CreateSymbolicLink(Path.Combine(dir, f), Path.Combine(source, f));
        using var scope = TorchSharp.torch.NewDisposeScope();
        var vectors = VarSharp.Checkpoints.SafeTensors.Load(Path.Combine(source, "vectors.safetensors"));
        VarSharp.Checkpoints.SafeTensors.Save(Path.Combine(dir, "vectors.safetensors"), change(vectors).ToList());
    }
}
