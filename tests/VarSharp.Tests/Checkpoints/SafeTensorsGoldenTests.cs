using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Checkpoints;

/// <summary>Files written by the Python reference writer must load, and their digests must match the published sums.</summary>
public class SafeTensorsGoldenTests
{
    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void WeightsLoadWithTheirDTypesAndMetadata(string caseName)
    {
        var path = Path.Combine(SharedData.GoldenDir, caseName, "weights.safetensors");
        var header = SafeTensors.ReadHeader(path);
        var tensors = SafeTensors.Load(path);
        try
        {
            Assert.Equal(caseName, header.Metadata["case"]);
            Assert.Equal(header.Entries.Select(e => e.Name), tensors.Keys);
            Assert.Equal(torch.int64, tensors["var.lvl_1L"].dtype);
            Assert.All(tensors.Where(kv => kv.Key != "var.lvl_1L"), kv => Assert.Equal(torch.float32, kv.Value.dtype));
            foreach (var e in header.Entries) Assert.Equal(e.Shape, tensors[e.Name].shape);
            // The masking bias is the one tensor that must carry -inf through the loader.
            var bias = tensors.Single(kv => kv.Key.EndsWith("attn_bias_for_masking", StringComparison.Ordinal)).Value;
            Assert.True(bias.isinf().any().item<bool>());
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void VectorsLoadAndLoadTensorMatchesLoad(string caseName)
    {
        var path = Path.Combine(SharedData.GoldenDir, caseName, "vectors.safetensors");
        var header = SafeTensors.ReadHeader(path);
        var all = SafeTensors.Load(path);
        try
        {
            Assert.Equal(header.Entries.Count, all.Count);
            var last = header.Entries[^1].Name;
            using var single = SafeTensors.LoadTensor(path, header, last);
            SafeTensorsRoundTripTests.AssertSameTensor(all[last], single);
        }
        finally
        {
            foreach (var t in all.Values) t.Dispose();
        }
    }

    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void DigestsMatchSha256Sums(string caseName)
    {
        var folder = Path.Combine(SharedData.GoldenDir, caseName);
        var sums = File.ReadAllLines(Path.Combine(folder, "SHA256SUMS"))
            .Select(line => line.Split("  ", 2))
            .Where(parts => parts.Length == 2 && parts[1].EndsWith(".safetensors", StringComparison.Ordinal))
            .ToList();

        Assert.NotEmpty(sums);
        foreach (var parts in sums) Assert.Equal(parts[0], FileDigest.Sha256(Path.Combine(folder, parts[1])));
    }

    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void WeightsSurviveOurWriterBitExactly(string caseName)
    {
        var source = Path.Combine(SharedData.GoldenDir, caseName, "weights.safetensors");
        using var temp = new TempFolder();
        var copy = temp.File("copy.safetensors");
        var original = SafeTensors.Load(source);
        try
        {
            SafeTensors.Save(copy, original, SafeTensors.ReadHeader(source).Metadata);
            var reloaded = SafeTensors.Load(copy);
            foreach (var (name, tensor) in original) SafeTensorsRoundTripTests.AssertSameTensor(tensor, reloaded[name]);
            foreach (var t in reloaded.Values) t.Dispose();
        }
        finally
        {
            foreach (var t in original.Values) t.Dispose();
        }
    }
}
