using System.Text.Json;
using TorchSharp;
using VarSharp.Config;
using VarSharp.Tests.Support;
using VarSharp.Tokenizer;

namespace VarSharp.Tests.Tokenizer;

/// <summary>Our VQ-VAE's state dict must have exactly the reference's keys, shapes and dtypes (the checkpoint contract).</summary>
public class VqVaeLayoutTests
{
    public static TheoryData<string> OfficialVaeFiles()
    {
        var data = new TheoryData<string>();
        var dir = Path.Combine(SharedData.GoldenDir, "official-keys");
        if (Directory.Exists(dir))
            foreach (var f in Directory.EnumerateFiles(dir, "vae_*.json").OrderBy(f => f, StringComparer.Ordinal)) data.Add(Path.GetFileName(f));
        else
            data.Add("(missing)");
        return data;
    }

    [GoldenTheory]
    [MemberData(nameof(OfficialVaeFiles))]
    public void OfficialLayoutMatches(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(SharedData.GoldenDir, "official-keys", file)));
        // The model is built from the file's own builder arguments; our presets must be exactly those.
        var cfg = VqVaeConfig.FromJson(doc.RootElement.GetProperty("config"));
        var preset = cfg.VPatchNums[^1] == 32 ? VqVaeConfig.Official512 : VqVaeConfig.Official256;
        Assert.Equal(preset, cfg);
        var expected = doc.RootElement.GetProperty("keys").EnumerateArray()
            .Select(k => (Name: k.GetProperty("name").GetString()!,
                          Shape: string.Join(",", k.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64())),
                          DType: k.GetProperty("dtype").GetString()!))
            .ToList();
        using var vae = new VqVae(cfg, torch.META);
        var actual = vae.state_dict().Select(kv => (Name: kv.Key, Shape: string.Join(",", kv.Value.shape), DType: TorchDType(kv.Value.dtype))).ToList();
        Assert.Equal(expected.Select(e => e.Name).Order(StringComparer.Ordinal), actual.Select(a => a.Name).Order(StringComparer.Ordinal));
        Assert.Equal(expected.OrderBy(e => e.Name, StringComparer.Ordinal), actual.OrderBy(a => a.Name, StringComparer.Ordinal));
        long numParams = vae.parameters().Sum(p => p.numel());
        Assert.Equal(doc.RootElement.GetProperty("num_params").GetInt64(), numParams);
        // Parameters and buffers as the reference has them (a buffer loaded as a parameter would be trained).
        var kinds = doc.RootElement.GetProperty("keys").EnumerateArray()
            .ToDictionary(k => k.GetProperty("name").GetString()!, k => k.GetProperty("kind").GetString()!);
        var parameters = vae.named_parameters().Select(p => p.name).ToHashSet(StringComparer.Ordinal);
        Assert.All(kinds, kv => Assert.Equal(kv.Value == "param", parameters.Contains(kv.Key)));
        Assert.All(vae.named_buffers().Select(b => b.name), name => Assert.Equal("buffer", kinds[name]));
    }

    [GoldenFact]
    public void GoldenConfigsMatchWeightKeys()
    {
        foreach (var dir in SharedData.GoldenCases())
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
            var cfg = VqVaeConfig.FromJson(doc.RootElement.GetProperty("vqvae"));
            using var vae = new VqVae(cfg, torch.META);
            var header = RawSafetensorsHeader(Path.Combine(dir, "weights.safetensors"));
            var expected = header.Where(kv => kv.Key.StartsWith("vae.", StringComparison.Ordinal))
                .Select(kv => $"{kv.Key[4..]}:{kv.Value}").Order(StringComparer.Ordinal);
            var actual = vae.state_dict().Select(kv => $"{kv.Key}:{string.Join(",", kv.Value.shape)}").Order(StringComparer.Ordinal);
            Assert.Equal(expected, actual);
        }
    }

    [Fact]
    public void PhiSelectionMatchesNumpyForOfficialAndGoldenConfigs()
    {
        // The reference resolves exact ties at si=2 and si=7 (K=4, S=10) through numpy's float rounding.
        Assert.Equal([0, 0, 1, 1, 1, 2, 2, 3, 3, 3], VqVaeConfig.Official256.PhiIndexPerScale());
        Assert.Equal([0, 0, 0, 0, 1, 1, 1, 2, 2, 2], (VqVaeConfig.Official256 with { ShareQuantResi = 3 }).PhiIndexPerScale());
        if (!SharedData.HasGolden) return;
        foreach (var dir in SharedData.GoldenCases())
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
            var block = doc.RootElement.GetProperty("vqvae");
            var cfg = VqVaeConfig.FromJson(block);
            Assert.Equal(block.GetProperty("phi_index_per_scale").EnumerateArray().Select(e => e.GetInt32()), cfg.PhiIndexPerScale());
            if (cfg.ShareQuantResi != 1)
                Assert.Equal(block.GetProperty("phi_ticks").EnumerateArray().Select(e => e.GetDouble()), cfg.PhiTicks());
        }
    }

    private static string TorchDType(torch.ScalarType t) => t switch
    {
        torch.ScalarType.Float32 => "float32",
        torch.ScalarType.Int64 => "int64",
        _ => t.ToString(),
    };

    /// <summary>Names and shapes from a safetensors header, parsed independently of the library's reader.</summary>
    private static Dictionary<string, string> RawSafetensorsHeader(string path)
    {
        using var fs = File.OpenRead(path);
        var lenBytes = new byte[8];
        fs.ReadExactly(lenBytes);
        var json = new byte[BitConverter.ToInt64(lenBytes)];
        fs.ReadExactly(json);
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__")
            .ToDictionary(p => p.Name, p => string.Join(",", p.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64())));
    }
}
