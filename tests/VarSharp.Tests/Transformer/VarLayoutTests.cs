using System.Text.Json;
using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Tests.Support;
using VarSharp.Transformer;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Transformer;

/// <summary>
/// Our state-dict layout equals the official checkpoints' (golden/official-keys/var_*.json): same keys, shapes,
/// dtypes and parameter/buffer kinds. The full-size models are built on the "meta" device, so no weights are
/// allocated: the same constructor, only the tensors carry shapes without storage.
/// </summary>
public class VarLayoutTests(ITestOutputHelper output)
{
    private static string KeysDir => Path.Combine(SharedData.GoldenDir, "official-keys");

    [GoldenFact]
    public void EveryOfficialVarLayoutMatches()
    {
        var files = Directory.GetFiles(KeysDir, "var_*.json").OrderBy(f => f, StringComparer.Ordinal).ToArray();
        Assert.NotEmpty(files);
        foreach (var file in files) CheckLayout(file);
    }

    private void CheckLayout(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(file));
        var root = doc.RootElement;
        var c = root.GetProperty("config");
        var cfg = new VarConfig
        {
            NumClasses = c.GetProperty("num_classes").GetInt32(),
            Depth = c.GetProperty("depth").GetInt32(),
            EmbedDim = c.GetProperty("embed_dim").GetInt32(),
            NumHeads = c.GetProperty("num_heads").GetInt32(),
            MlpRatio = c.GetProperty("mlp_ratio").GetDouble(),
            NormEps = c.GetProperty("norm_eps").GetDouble(),
            SharedAln = c.GetProperty("shared_aln").GetBoolean(),
            AttnL2Norm = c.GetProperty("attn_l2_norm").GetBoolean(),
            CondDropRate = c.GetProperty("cond_drop_rate").GetDouble(),
            DropPathRate = c.GetProperty("drop_path_rate").GetDouble(),
            PatchNums = c.GetProperty("patch_nums").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            VocabSize = c.GetProperty("V").GetInt32(),
            Cvae = c.GetProperty("Cvae").GetInt32(),
        };
        Assert.Equal(c.GetProperty("L").GetInt32(), cfg.L);

        // The preset of that depth is the same model (drop_path 0.1·depth/24 may differ in the last bit).
        var preset = VarConfig.Preset(cfg.Depth);
        Assert.True(Math.Abs(preset.DropPathRate - cfg.DropPathRate) < 1e-12, $"{file}: preset drop_path {preset.DropPathRate} vs {cfg.DropPathRate}");
        Assert.Equal(cfg, preset with { DropPathRate = cfg.DropPathRate });

        using var model = new VarModel(cfg, META);
        var ours = ModuleWeights.Layout(model).ToDictionary(e => e.Name);
        var theirs = root.GetProperty("keys").EnumerateArray().ToDictionary(k => k.GetProperty("name").GetString()!);

        var missing = theirs.Keys.Except(ours.Keys).OrderBy(k => k).ToList();
        var extra = ours.Keys.Except(theirs.Keys).OrderBy(k => k).ToList();
        Assert.True(missing.Count == 0 && extra.Count == 0,
            $"{Path.GetFileName(file)}: missing [{string.Join(", ", missing.Take(10))}], unexpected [{string.Join(", ", extra.Take(10))}]");

        long numParams = 0;
        foreach (var (name, k) in theirs)
        {
            var e = ours[name];
            var shape = k.GetProperty("shape").EnumerateArray().Select(s => s.GetInt64()).ToArray();
            Assert.True(shape.SequenceEqual(e.Shape), $"{name}: official [{string.Join(",", shape)}] vs ours [{string.Join(",", e.Shape)}]");
            var dtype = k.GetProperty("dtype").GetString() switch
            {
                "float32" => ScalarType.Float32,
                "int64" => ScalarType.Int64,
                var s => throw new InvalidDataException($"{name}: unknown dtype {s}"),
            };
            Assert.True(dtype == e.DType, $"{name}: official {dtype} vs ours {e.DType}");
            Assert.True((k.GetProperty("kind").GetString() == "param") == e.IsParameter, $"{name}: kind differs");
            if (e.IsParameter) numParams += e.NumElements;
        }
        Assert.Equal(root.GetProperty("num_params").GetInt64(), numParams);

        // Honesty check: nothing was materialised.
        Assert.All(model.parameters(), p => Assert.True(p.is_meta));
        Assert.All(model.buffers(), b => Assert.True(b.is_meta));
        output.WriteLine($"{Path.GetFileName(file)}: {theirs.Count} keys, {numParams:N0} params, layout matches (built on meta)");
    }
}
