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
    /// <summary>Far above any model config (a few KB); a manifest claiming more is refused rather than read.</summary>
    public const long MaxConfigBytes = 64 << 20;

    private readonly JsonDocument _config;
    private readonly Dictionary<string, Tensor> _weights;

    private ModelFiles(string configPath, JsonDocument config, string weightsPath, Dictionary<string, Tensor> weights, BundleManifest? manifest,
        string weightsSha256)
    {
        WeightsSha256 = weightsSha256;
        ConfigPath = configPath;
        _config = config;
        WeightsPath = weightsPath;
        _weights = weights;
        Manifest = manifest;
    }

    public string ConfigPath { get; }

    /// <summary>SHA-256 of the weights file as it was read (checked against the manifest for a bundle).</summary>
    public string WeightsSha256 { get; }
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
        var configPath = ModelFolder.ConfigPath(dir);
        // Named before the check so that it is the one deferred; a bundle lacking it then fails the check as a missing file.
        var weightsName = ModelFolder.WeightFileNames.FirstOrDefault(n => File.Exists(Path.Combine(dir, n))) ?? ModelFolder.WeightFileNames[0];
        var manifest = VerifyDeferring(dir, trust, Path.GetFileName(configPath), weightsName);
        var weightsPath = manifest is null ? ModelFolder.WeightsPath(dir) : Path.Combine(dir, weightsName);
        return Read(configPath, weightsPath, keep, manifest is null ? null : (manifest, dir));
    }

    /// <summary>Reads a config file and a weights file that form no bundle (nothing to verify them against).</summary>
    public static ModelFiles Read(string configPath, string weightsPath, Func<string, bool> keep) => Read(configPath, weightsPath, keep, null);

    /// <summary>A model folder's config.json alone, parsed from the bytes checked against its manifest when it is a bundle.</summary>
    public static JsonDocument ReadConfig(string dir)
    {
        var configPath = ModelFolder.ConfigPath(dir);
        var manifest = VerifyDeferring(dir, trust: null, Path.GetFileName(configPath));
        return JsonConfig.Parse(ReadConfigBytes(configPath, manifest is null ? null : (manifest, dir)), configPath);
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

    /// <summary>The bundle's verified manifest with the named files' digests left to the reader; null for a plain folder.</summary>
    private static BundleManifest? VerifyDeferring(string dir, BundleTrust? trust, params string[] deferredNames)
    {
        var deferred = new HashSet<string>(deferredNames, StringComparer.Ordinal);
        var manifest = trust is not null ? BundleSignature.VerifyBundle(dir, trust, deferred).Manifest
            : ModelBundle.IsBundle(dir) ? ModelBundle.Verify(dir, check: null, deferred)
            : null;
        AfterManifestCheck?.Invoke(dir);
        return manifest;
    }

    private static ModelFiles Read(string configPath, string weightsPath, Func<string, bool> keep, (BundleManifest Manifest, string Dir)? bundle)
    {
        var config = JsonConfig.Parse(ReadConfigBytes(configPath, bundle), configPath);
        try
        {
            if (!File.Exists(weightsPath)) throw PathErrors.FileMissing(weightsPath, "Weights file");
            var (weights, _, sha, bytes) = LoadWeights(weightsPath, keep, bundle);
            try
            {
                if (bundle is { } v) ModelBundle.CheckDigest(v.Manifest, v.Dir, Path.GetFileName(weightsPath), sha, bytes);
                return new ModelFiles(configPath, config, weightsPath, weights, bundle?.Manifest, sha);
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

    /// <summary>Config bytes; a bundle's are read only up to one byte past the manifest's length, then checked against it.</summary>
    private static byte[] ReadConfigBytes(string configPath, (BundleManifest Manifest, string Dir)? bundle)
    {
        if (bundle is not { } b) return JsonConfig.ReadFile(configPath);
        var name = Path.GetFileName(configPath);
        long expected = b.Manifest.Files.TryGetValue(name, out var entry) ? entry.Bytes : 0;
        if (expected > MaxConfigBytes)
            throw new VarSharpException($"Config file {configPath} is {expected} bytes by its manifest; a model config is at most {MaxConfigBytes}.");
        byte[] bytes;
        using (var stream = new FileStream(configPath, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            var buffer = new byte[expected + 1];
            int total = 0, n;
            while (total < buffer.Length && (n = stream.Read(buffer, total, buffer.Length - total)) > 0) total += n;
            bytes = buffer[..total];
        }
        ModelBundle.CheckDigest(b.Manifest, b.Dir, name, Convert.ToHexStringLower(SHA256.HashData(bytes)), bytes.Length);
        return bytes;
    }

    private static HashedTensors LoadWeights(string path, Func<string, bool> keep, (BundleManifest Manifest, string Dir)? bundle)
    {
        try
        {
            return SafeTensors.LoadHashed(path, keep);
        }
        catch (Exception e) when (bundle is not null && e is VarSharpException or IOException)
        {
            // A bundle's weights that do not even parse (or end early) were altered: say so, as a digest error, rather
            // than name the malformed byte. The file is read again only to word the error; nothing from it is used.
            var b = bundle.Value;
            string sha;
            long length;
            try
            {
                sha = FileDigest.Sha256(path);
                length = new FileInfo(path).Length;
            }
            catch (IOException)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
                throw;
            }
            ModelBundle.CheckDigest(b.Manifest, b.Dir, Path.GetFileName(path), sha, length);
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var t in _weights.Values) t.Dispose();
        _config.Dispose();
    }
}
