using System.Text.Json;
using VarSharp.Checkpoints;
using VarSharp.Config;
using static TorchSharp.torch;

namespace VarSharp.Parity;

/// <summary>
/// One folder in the format of ../shared/golden/&lt;case&gt;: config.json, weights.safetensors (keys `vae.*` and `var.*`)
/// and vectors.safetensors. Models are rebuilt from config.json alone.
/// </summary>
public sealed class GoldenCase : IDisposable
{
    public string Directory { get; }
    public string Name => Path.GetFileName(Directory.TrimEnd(Path.DirectorySeparatorChar));
    public JsonDocument Config { get; }
    public VqVaeConfig VqVae { get; }
    public Dictionary<string, Tensor> Vectors { get; }
    public Dictionary<string, Tensor> Weights { get; }
    public int ImageSize { get; }

    private GoldenCase(string dir, JsonDocument config, Dictionary<string, Tensor> vectors, Dictionary<string, Tensor> weights)
    {
        Directory = dir;
        Config = config;
        VqVae = VqVaeConfig.FromJson(config.RootElement.GetProperty("vqvae"));
        Vectors = vectors;
        Weights = weights;
        ImageSize = config.RootElement.TryGetProperty("image_size", out var s) ? s.GetInt32() : VqVae.ImageSize;
    }

    /// <summary>Opens a case folder; weights come from weights.safetensors unless another loader is given.</summary>
    public static GoldenCase Open(string dir, Func<string, Dictionary<string, Tensor>>? weightsLoader = null)
    {
        if (!System.IO.Directory.Exists(dir)) throw PathErrors.FolderMissing(dir, "Golden case folder");
        foreach (var f in new[] { "config.json", "vectors.safetensors" })
            if (!File.Exists(Path.Combine(dir, f)))
                throw new VarSharpException($"Golden case folder {dir} has no {f}; expected config.json, vectors.safetensors and weights.");
        var config = JsonConfig.ParseFile(Path.Combine(dir, "config.json"));
        var vectors = SafeTensors.Load(Path.Combine(dir, "vectors.safetensors"));
        // A case of the same format may store inputs in another precision (I32 labels, F16 images): they are taken as
        // the int64 and float32 the models read, which is exact, and references compare the same way.
        foreach (var key in vectors.Keys.ToList())
        {
            var t = vectors[key];
            var want = t.is_floating_point() ? ScalarType.Float32 : t.dtype == ScalarType.Bool ? ScalarType.Bool : ScalarType.Int64;
            if (t.dtype == want) continue;
            vectors[key] = t.to(want);
            t.Dispose();
        }
        var weights = weightsLoader is null ? SafeTensors.Load(Path.Combine(dir, "weights.safetensors")) : weightsLoader(dir);
        return new GoldenCase(dir, config, vectors, weights);
    }

    public Tensor Vector(string name) =>
        Vectors.TryGetValue(name, out var t) ? t : throw new VarSharpException($"Golden case {Name} has no tensor '{name}' in vectors.safetensors.");

    public bool Has(string name) => Vectors.ContainsKey(name);

    public void Dispose()
    {
        Config.Dispose();
        foreach (var t in Vectors.Values.Concat(Weights.Values)) t.Dispose();
    }
}
