using System.Security.Cryptography;
using System.Text.Json;
using VarSharp.Config;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints;

/// <summary>
/// A model folder's config and weights, each read exactly once. For a bundle the manifest (and, with a trust list, its
/// signature) is checked first; config.json and the weights file are then hashed as they are read and compared with
/// it, so what is parsed and loaded is exactly what was verified even if someone rewrites the folder meanwhile. A plain
/// folder (no manifest) is read the same way, unchecked. Weights are on the CPU; models copy them to their device.
/// </summary>
public sealed class ModelFiles : IDisposable
{
    private readonly JsonDocument _config;
    private readonly Dictionary<string, Tensor> _weights;

    private ModelFiles(string configPath, JsonDocument config, string weightsPath, Dictionary<string, Tensor> weights, BundleManifest? manifest)
    {
        ConfigPath = configPath;
        _config = config;
        WeightsPath = weightsPath;
        _weights = weights;
        Manifest = manifest;
    }

    public string ConfigPath { get; }
    public string WeightsPath { get; }

    /// <summary>The config document's root, parsed from the bytes that were verified.</summary>
    public JsonElement Config => _config.RootElement;

    /// <summary>The selected tensors by their names in the file (e.g. `vae.*`).</summary>
    public IReadOnlyDictionary<string, Tensor> Weights => _weights;

    /// <summary>The verified manifest, or null for a plain folder.</summary>
    public BundleManifest? Manifest { get; }

    /// <summary>
    /// Reads a model folder: config.json and its weights file (<see cref="ModelFolder.WeightsPath"/>), keeping the tensors
    /// <paramref name="keep"/> selects. With <paramref name="trust"/> only a bundle signed by one of its keys is read.
    /// </summary>
    public static ModelFiles Read(string dir, Func<string, bool> keep, BundleTrust? trust = null)
    {
        var weightsPath = ModelFolder.WeightsPath(dir);
        var configPath = ModelFolder.ConfigPath(dir);
        var deferred = new HashSet<string>(StringComparer.Ordinal) { Path.GetFileName(configPath), Path.GetFileName(weightsPath) };
        var manifest = trust is not null ? BundleSignature.VerifyBundle(dir, trust, deferred).Manifest
            : ModelBundle.IsBundle(dir) ? ModelBundle.Verify(dir, check: null, deferred)
            : null;
        AfterManifestCheck?.Invoke(dir);
        return Read(configPath, weightsPath, keep, manifest is null ? null : (manifest, dir));
    }

    /// <summary>
    /// Tests only: runs between the manifest check and the reading of the files, to swap a file right there. Per thread,
    /// so tests running in parallel never see another test's hook.
    /// </summary>
    internal static Action<string>? AfterManifestCheck
    {
        get => afterManifestCheck;
        set => afterManifestCheck = value;
    }

    [ThreadStatic] private static Action<string>? afterManifestCheck;

    /// <summary>Reads a config file and a weights file that form no bundle (nothing to verify them against).</summary>
    public static ModelFiles Read(string configPath, string weightsPath, Func<string, bool> keep) => Read(configPath, weightsPath, keep, null);

    private static ModelFiles Read(string configPath, string weightsPath, Func<string, bool> keep, (BundleManifest Manifest, string Dir)? bundle)
    {
        var configBytes = JsonConfig.ReadFile(configPath);
        if (bundle is { } b)
            ModelBundle.CheckDigest(b.Manifest, b.Dir, Path.GetFileName(configPath), Convert.ToHexStringLower(SHA256.HashData(configBytes)), configBytes.Length);
        var config = JsonConfig.Parse(configBytes, configPath);
        try
        {
            if (!File.Exists(weightsPath)) throw PathErrors.FileMissing(weightsPath, "Weights file");
            var (weights, sha, bytes) = LoadWeights(weightsPath, keep, bundle);
            try
            {
                if (bundle is { } v) ModelBundle.CheckDigest(v.Manifest, v.Dir, Path.GetFileName(weightsPath), sha, bytes);
                return new ModelFiles(configPath, config, weightsPath, weights, bundle?.Manifest);
            }
            catch
            {
                foreach (var t in weights.Values) t.Dispose();
                throw;
            }
        }
        catch
        {
            config.Dispose();
            throw;
        }
    }

    private static (Dictionary<string, Tensor>, string, long) LoadWeights(string path, Func<string, bool> keep, (BundleManifest Manifest, string Dir)? bundle)
    {
        try
        {
            return SafeTensors.LoadHashed(path, keep);
        }
        catch (VarSharpException) when (bundle is { } b)
        {
            // A bundle's weights that do not even parse were altered: say so, as a digest error, rather than name the
            // malformed byte. The file is read again only to word the error; nothing from it is used.
            ModelBundle.CheckDigest(b.Manifest, b.Dir, Path.GetFileName(path), FileDigest.Sha256(path), new FileInfo(path).Length);
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var t in _weights.Values) t.Dispose();
        _config.Dispose();
    }
}
