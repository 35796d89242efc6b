using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Tokenizer;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Tests.Support;

/// <summary>A tiny tokenizer + transformer pair (8×8 images, scales 1,2,3,4, V = 16, 5 classes), in memory or as a model folder.</summary>
public static class TinyModels
{
    public static VarConfig Var(int[]? patchNums = null, int vocab = 16, int cvae = 4) => new()
    {
        NumClasses = 5,
        Depth = 2,
        EmbedDim = 32,
        NumHeads = 2,
        SharedAln = false,
        AttnL2Norm = true,
        CondDropRate = 0.1,
        PatchNums = patchNums ?? [1, 2, 3, 4],
        VocabSize = vocab,
        Cvae = cvae,
    };

    /// <summary>Weights drawn from a generator seeded <paramref name="seed"/>, with the near-zero parts perturbed so every term matters.</summary>
    public static (VqVae Vae, VarModel Var) Create(ulong seed = 7)
    {
        var vae = new VqVae(TinyConfigs.VqVae());
        var model = new VarModel(Var());
        using var gen = new Generator(seed);
        using var noGrad = no_grad();
        foreach (var (_, p) in vae.named_parameters()) p.copy_(randn(p.shape, generator: gen).mul_(0.2));
        model.InitWeights(gen);
        foreach (var (name, p) in model.named_parameters())
            if (name.EndsWith("bias") || name.Contains("ada_lin") || name.StartsWith("head."))
                p.add_(randn(p.shape, generator: gen).mul_(0.3));
        vae.eval();
        model.eval();
        return (vae, model);
    }

    /// <summary>Writes config.json (vqvae + var blocks) and model.safetensors (vae.* + var.*) into <paramref name="dir"/>.</summary>
    public static string WriteFolder(string dir, ulong seed = 7, Func<JsonObject, JsonObject>? editConfig = null)
    {
        Directory.CreateDirectory(dir);
        Write(seed, editConfig, (config, tensors) =>
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), config);
            SafeTensors.Save(Path.Combine(dir, "model.safetensors"), tensors);
        });
        return dir;
    }

    /// <summary>The same model as <see cref="WriteFolder"/>, written as a bundle (with manifest.json) by <see cref="ModelBundle.Write"/>.</summary>
    public static string WriteBundle(string dir, ulong seed = 7, Func<JsonObject, JsonObject>? editConfig = null, IReadOnlyList<BundleSource>? sources = null)
    {
        Write(seed, editConfig, (config, tensors) => ModelBundle.Write(dir, config, tensors, sources: sources));
        return dir;
    }

    private static void Write(ulong seed, Func<JsonObject, JsonObject>? editConfig, Action<string, List<KeyValuePair<string, Tensor>>> write)
    {
        var (vae, model) = Create(seed);
        using (vae)
        using (model)
        {
            var root = new JsonObject
            {
                ["vqvae"] = JsonNode.Parse(JsonSerializer.Serialize(vae.Config, JsonConfig.Options)),
                ["var"] = JsonNode.Parse(model.Config.ToJson()),
            };
            if (editConfig is not null) root = editConfig(root);
            var tensors = vae.state_dict().Select(kv => new KeyValuePair<string, Tensor>("vae." + kv.Key, kv.Value))
                .Concat(model.state_dict().Select(kv => new KeyValuePair<string, Tensor>("var." + kv.Key, kv.Value)))
                .ToList();
            write(root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }), tensors);
        }
    }
}

/// <summary>One tiny model folder shared by a test class (xunit class fixture); tests write their variants beside it.</summary>
public sealed class TinyModelFolderFixture : IDisposable
{
    private readonly TempFolder _temp = new();

    public TinyModelFolderFixture() => Dir = TinyModels.WriteFolder(_temp.File("model"));

    public string Dir { get; }

    public void Dispose() => _temp.Dispose();
}
