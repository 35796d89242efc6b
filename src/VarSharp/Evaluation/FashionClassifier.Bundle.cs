using System.Text.Json;
using System.Text.Json.Nodes;
using VarSharp.Checkpoints;
using VarSharp.Config;
using static TorchSharp.torch;

namespace VarSharp.Evaluation;

public sealed partial class FashionClassifier
{
    /// <summary>Key prefix of the classifier's tensors in model.safetensors (like `vae.` and `var.` for the generator).</summary>
    public const string WeightsPrefix = "classifier.";

    /// <summary>
    /// Writes the classifier as a model bundle: config.json with a `classifier` block (<paramref name="info"/>, with
    /// the architecture fields taken from this network), model.safetensors (`classifier.*`) and manifest.json.
    /// </summary>
    public void Save(string dir, ClassifierInfo info, bool force = false)
    {
        ArgumentNullException.ThrowIfNull(info);
        info = info with { Kind = ClassifierInfo.FashionCnn, ImageSize = ImageSize, FeatureDim = FeatureDim, NumClasses = NumClasses };
        info.Validate("The classifier info");
        var root = new JsonObject { ["classifier"] = JsonSerializer.SerializeToNode(info, JsonConfig.Options) };
        var json = root.ToJsonString(JsonConfig.Options) + "\n";
        var tensors = state_dict().Select(kv => KeyValuePair.Create(WeightsPrefix + kv.Key, kv.Value)).ToList();
        ModelBundle.Write(dir, json, tensors, force, producer: "varsharp train-classifier");
    }

    /// <summary>
    /// Loads a classifier bundle: verifies manifest.json (every file's length and SHA-256), reads the `classifier`
    /// block of config.json, builds the network it describes and loads `classifier.*` strictly (no missing, extra or
    /// misshapen tensor). With <paramref name="trust"/> the manifest must also be signed by one of its keys. The result
    /// is in eval mode and carries <see cref="Info"/> and <see cref="WeightsDigest"/>.
    /// </summary>
    public static FashionClassifier Load(string dir, Device? device = null, BundleTrust? trust = null)
    {
        if (!Directory.Exists(dir)) throw PathErrors.FolderMissing(dir, "Classifier folder");
        if (!ModelBundle.IsBundle(dir))
            throw new VarSharpException($"Classifier folder {dir} has no {ModelBundle.ManifestFileName}; train one with `varsharp train-classifier --out DIR`.");
        // Config and weights are hashed as they are read and checked against the manifest (ModelFiles).
        using var files = ModelFiles.Read(dir, _ => true, trust);
        var manifest = files.Manifest
            ?? throw new ModelBundleException(ModelBundleProblem.ManifestMissing, $"Classifier folder {dir} lost its {ModelBundle.ManifestFileName} while loading, so its files cannot be verified.");
        var configPath = files.ConfigPath;
        var weightsPath = files.WeightsPath;
        if (Path.GetFileName(weightsPath) != ModelBundle.WeightsFileName || !manifest.Files.TryGetValue(ModelBundle.WeightsFileName, out var weightsEntry))
            throw new VarSharpException($"Classifier bundle {dir} must hold {ModelBundle.ConfigFileName} and {ModelBundle.WeightsFileName}.");

        if (files.Config.ValueKind != JsonValueKind.Object || !files.Config.TryGetProperty("classifier", out var block))
            throw new VarSharpException($"Config file {configPath} has no 'classifier' block, so it describes no classifier.");
        var info = JsonConfig.Deserialize<ClassifierInfo>(block, "classifier").Validate($"Config file {configPath}");

        var foreign = files.Weights.Keys.Where(k => !k.StartsWith(WeightsPrefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        if (foreign.Count > 0)
            throw new VarSharpException($"Weights file {weightsPath} holds {foreign.Count} tensor(s) outside '{WeightsPrefix}*', e.g. '{foreign[0]}'; a classifier bundle holds only the classifier.");
        var model = new FashionClassifier(info.ImageSize, info.NumClasses, device);
        try
        {
            ModuleWeights.LoadStrict(model, files.Weights, WeightsPrefix);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        model.Info = info;
        model.WeightsDigest = weightsEntry.Sha256;
        return model;
    }
}
