using System.Text.Json;
using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Tests.Support;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Tests.Transformer;

/// <summary>A golden case folder loaded for the transformer tests: config, VAR model with the golden weights, vectors.</summary>
internal sealed class VarGoldenCase : IDisposable
{
    public VarGoldenCase(string name)
    {
        Name = name;
        Dir = Path.Combine(SharedData.GoldenDir, name);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "config.json")));
        Root = doc.RootElement.Clone();
        Config = VarConfig.FromGoldenConfig(Root);
        Model = new VarModel(Config);
        var weights = SafeTensors.Load(Path.Combine(Dir, "weights.safetensors"));
        try { ModuleWeights.LoadStrict(Model, weights, "var."); }
        finally { foreach (var t in weights.Values) t.Dispose(); }
        Model.eval();
        Vectors = SafeTensors.Load(Path.Combine(Dir, "vectors.safetensors"));
    }

    public string Name { get; }
    public string Dir { get; }
    public JsonElement Root { get; }
    public VarConfig Config { get; }
    public VarModel Model { get; }
    public Dictionary<string, Tensor> Vectors { get; }

    public Tensor this[string key] => Vectors.TryGetValue(key, out var t) ? t : throw new KeyNotFoundException($"{Name}: vectors.safetensors has no '{key}'");

    public void Dispose()
    {
        foreach (var t in Vectors.Values) t.Dispose();
        Model.Dispose();
    }
}

internal static class TensorAssert
{
    public static double MaxAbs(Tensor t)
    {
        using var a = t.abs();
        using var m = a.max();
        return m.to(ScalarType.Float64).item<double>();
    }

    public static double MaxAbsDiff(Tensor actual, Tensor expected)
    {
        using var d = actual.to(ScalarType.Float64).sub(expected.to(ScalarType.Float64));
        return MaxAbs(d);
    }

    /// <summary>Asserts max|Δ| ≤ rel·max(1, max|ref|) and returns max|Δ|.</summary>
    public static double Close(Tensor actual, Tensor expected, double rel, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double err = MaxAbsDiff(actual, expected), tol = rel * Math.Max(1.0, MaxAbs(expected));
        Assert.True(err <= tol, $"{what}: max|Δ| = {err:g3} exceeds {tol:g3}; first values {First(actual)} vs {First(expected)}");
        return err;
    }

    public static string First(Tensor t, int n = 5)
    {
        using var f = t.reshape(-1).narrow(0, 0, Math.Min(n, t.numel())).to(ScalarType.Float64);
        return "[" + string.Join(", ", f.data<double>().ToArray().Select(v => v.ToString("g6"))) + "]";
    }
}
