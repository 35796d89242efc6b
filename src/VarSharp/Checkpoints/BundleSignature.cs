using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using VarSharp.Config;

namespace VarSharp.Checkpoints;

/// <summary>Who signed a bundle, as <see cref="BundleSignature.Verify"/> found it.</summary>
public sealed record BundleSignatureInfo(string KeyId, string KeyPath);

/// <summary>
/// Public keys whose signatures a caller accepts. A manifest proves that a bundle's files are the ones it was written
/// with; it does not say who wrote it, since anyone who alters a file can write a new manifest too. A signature over the
/// manifest by a key the caller trusts does.
/// </summary>
public sealed class BundleTrust
{
    private readonly Dictionary<string, (string Path, byte[] PublicKey)> _keys;

    private BundleTrust(Dictionary<string, (string, byte[])> keys) => _keys = keys;

    /// <summary>The key ids (first 16 hex digits of the SHA-256 of the public key's DER encoding) this trust accepts.</summary>
    public IReadOnlyCollection<string> KeyIds => _keys.Keys;

    /// <summary>Reads public keys (PEM, "BEGIN PUBLIC KEY", ECDSA P-256) as <c>varsharp keygen</c> writes them.</summary>
    public static BundleTrust Load(IEnumerable<string> publicKeyPaths)
    {
        ArgumentNullException.ThrowIfNull(publicKeyPaths);
        var keys = new Dictionary<string, (string, byte[])>(StringComparer.Ordinal);
        foreach (var path in publicKeyPaths)
        {
            using var key = BundleSignature.ReadKey(path, wantPrivate: false);
            var spki = key.ExportSubjectPublicKeyInfo();
            keys[BundleSignature.KeyId(spki)] = (path, spki);
        }
        if (keys.Count == 0) throw new VarSharpException("a trust list needs at least one public key.");
        return new BundleTrust(keys);
    }

    internal bool TryGet(string keyId, out string path, out byte[] publicKey)
    {
        bool found = _keys.TryGetValue(keyId, out var entry);
        (path, publicKey) = found ? entry : ("", []);
        return found;
    }
}

/// <summary>
/// Signatures of model bundles: <c>manifest.sig</c> beside <c>manifest.json</c> holds an ECDSA P-256 / SHA-256
/// signature of the manifest's exact bytes and the id of the key that made it. Since the manifest lists the SHA-256 of
/// every other file, the signature covers the whole bundle; rewriting a bundle (e.g. <c>recommend</c>) drops it.
/// </summary>
public static class BundleSignature
{
    public const string FileName = "manifest.sig";
    public const string FormatName = "varsharp-signature";
    public const string Algorithm = "ecdsa-p256-sha256";
    private const long MaxSignatureBytes = 64 * 1024;

    /// <summary>The first 16 hex digits of the SHA-256 of a public key's SubjectPublicKeyInfo DER bytes.</summary>
    public static string KeyId(byte[] subjectPublicKeyInfo) => Convert.ToHexStringLower(SHA256.HashData(subjectPublicKeyInfo))[..16];

    /// <summary>
    /// Writes a new key pair: <c>PATH.key</c> (PKCS#8 PEM, readable by the owner only) and <c>PATH.pub</c>. Existing
    /// files are never replaced. Returns the key id.
    /// </summary>
    public static string CreateKeyPair(string basePath)
    {
        ArgumentNullException.ThrowIfNull(basePath);
        // "keys/" or "" would make hidden files named ".key" and ".pub": the base path must name the pair.
        if (Path.GetFileName(basePath).Length == 0 || Directory.Exists(basePath))
            throw new VarSharpException($"'{basePath}' names a folder, not a key; give a path such as keys/team (writes keys/team.key and keys/team.pub).");
        string privatePath = basePath + ".key", publicPath = basePath + ".pub";
        foreach (var p in new[] { privatePath, publicPath })
            if (File.Exists(p) || Directory.Exists(p)) throw new VarSharpException($"{p} already exists; keys are never overwritten, choose another path.");
        PathErrors.CheckOutput(privatePath);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var dir = Path.GetDirectoryName(Path.GetFullPath(privatePath))!;
        Directory.CreateDirectory(dir);
        // Both files are created new (never replacing one that appeared since the check above); if either cannot be
        // written, the files this call created go again, so a retry is not blocked by a half-made pair.
        var created = new List<string>();
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            WriteNew(privatePath, options, key.ExportPkcs8PrivateKeyPem(), created);
            WriteNew(publicPath, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write }, key.ExportSubjectPublicKeyInfoPem(), created);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            foreach (var path in created)
            {
                try { File.Delete(path); }
                catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException) { }
            }
            throw new VarSharpException($"Cannot write the key pair {basePath}.key/.pub: {e.Message.TrimEnd('.')}; nothing was kept.", e);
        }
        return KeyId(key.ExportSubjectPublicKeyInfo());
    }

    private static void WriteNew(string path, FileStreamOptions options, string pem, List<string> created)
    {
        using var stream = new FileStream(path, options);
        created.Add(path);
        stream.Write(Encoding.ASCII.GetBytes(pem + "\n"));
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Reads a private key file as <see cref="Sign"/> would and returns its key id: a check to run before long work.</summary>
    public static string SigningKeyId(string privateKeyPath)
    {
        using var key = ReadKey(privateKeyPath, wantPrivate: true);
        return KeyId(key.ExportSubjectPublicKeyInfo());
    }

    /// <summary>
    /// Signs the bundle at <paramref name="bundleDir"/> with the private key at <paramref name="privateKeyPath"/>,
    /// after verifying its manifest (an altered bundle is never signed), and writes manifest.sig atomically.
    /// </summary>
    public static BundleSignatureInfo Sign(string bundleDir, string privateKeyPath)
    {
        // The bytes signed are the bytes the files were just checked against.
        byte[] manifest = [];
        ModelBundle.Verify(bundleDir, bytes => manifest = bytes);
        using var key = ReadKey(privateKeyPath, wantPrivate: true);
        var keyId = KeyId(key.ExportSubjectPublicKeyInfo());
        var node = new JsonObject
        {
            ["format"] = FormatName,
            ["format_version"] = 1,
            ["algorithm"] = Algorithm,
            ["key_id"] = keyId,
            ["manifest_sha256"] = Convert.ToHexStringLower(SHA256.HashData(manifest)),
            ["signature"] = Convert.ToBase64String(key.SignData(manifest, HashAlgorithmName.SHA256)),
        };
        var json = node.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        var bundleFull = Path.GetFullPath(bundleDir).TrimEnd('/');
        AtomicFile.Write(Path.Combine(bundleFull, FileName), Encoding.UTF8.GetBytes(json + "\n"), tempDir: Path.GetDirectoryName(bundleFull));
        return new BundleSignatureInfo(keyId, privateKeyPath);
    }

    /// <summary>
    /// Verifies the bundle's files against its manifest, then the manifest's signature against <paramref name="trust"/>:
    /// a bundle without manifest.sig, signed by a key not trusted, or whose signature does not match its manifest is
    /// refused with a <see cref="ModelBundleException"/>.
    /// </summary>
    public static BundleSignatureInfo Verify(string bundleDir, BundleTrust trust) => VerifyBundle(bundleDir, trust).Signature;

    /// <summary>
    /// <see cref="Verify"/> returning the verified manifest too. The manifest is read once: its bytes are checked against
    /// the signature, then parsed and the files checked against them, so no other manifest can slip in between.
    /// </summary>
    internal static (BundleManifest Manifest, BundleSignatureInfo Signature) VerifyBundle(string bundleDir, BundleTrust trust,
        IReadOnlySet<string>? deferred = null)
    {
        ArgumentNullException.ThrowIfNull(trust);
        BundleSignatureInfo? info = null;
        var manifest = ModelBundle.Verify(bundleDir, bytes => info = CheckSignature(bundleDir, bytes, trust), deferred);
        return (manifest, info!);
    }

    private static BundleSignatureInfo CheckSignature(string bundleDir, byte[] manifest, BundleTrust trust)
    {
        var (keyId, signature) = Read(bundleDir);
        if (!trust.TryGet(keyId, out var keyPath, out var spki))
            throw new ModelBundleException(ModelBundleProblem.UntrustedKey,
                $"Model bundle {bundleDir} is signed by key {keyId}, which is not among the trusted keys ({string.Join(", ", trust.KeyIds)}).");
        using var key = ECDsa.Create();
        key.ImportSubjectPublicKeyInfo(spki, out _);
        if (!key.VerifyData(manifest, signature, HashAlgorithmName.SHA256))
            throw new ModelBundleException(ModelBundleProblem.SignatureInvalid,
                $"Model bundle {bundleDir} has a signature by key {keyId} that does not match its manifest, so the manifest was altered after signing.");
        return new BundleSignatureInfo(keyId, keyPath);
    }

    /// <summary>The key id a bundle claims to be signed by, or null when it has no manifest.sig (nothing is verified).</summary>
    public static string? SignedBy(string bundleDir) => File.Exists(Path.Combine(bundleDir, FileName)) ? Read(bundleDir).KeyId : null;

    private static (string KeyId, byte[] Signature) Read(string bundleDir)
    {
        var path = Path.Combine(bundleDir, FileName);
        if (!File.Exists(path))
            throw new ModelBundleException(ModelBundleProblem.SignatureMissing, $"Model bundle {bundleDir} has no {FileName}, so it is not signed.");
        ModelBundleException Invalid(string why) => new(ModelBundleProblem.SignatureInvalid, $"Signature file {path} is not a valid {FormatName} file: {why}.");
        var bytes = ModelBundle.ReadSmallFile(path, MaxSignatureBytes, Invalid);
        try
        {
            using var doc = JsonConfig.ParseUntrusted(bytes);
            var root = doc.RootElement;
            string Text(string name) => root.ValueKind == JsonValueKind.Object && root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String
                ? v.GetString()! : throw Invalid($"\"{name}\" is missing or not a string");
            if (Text("format") != FormatName) throw Invalid($"\"format\" is not \"{FormatName}\"");
            if (Text("algorithm") != Algorithm) throw Invalid($"\"algorithm\" is not \"{Algorithm}\"");
            var keyId = Text("key_id");
            if (keyId.Length != 16 || !keyId.All(Uri.IsHexDigit)) throw Invalid("\"key_id\" is not 16 hex digits");
            return (keyId.ToLowerInvariant(), Convert.FromBase64String(Text("signature")));
        }
        catch (Exception e) when (e is JsonException or FormatException)
        {
            throw Invalid(e is FormatException ? "\"signature\" is not base64" : $"it is not JSON ({e.Message})");
        }
    }

    internal static ECDsa ReadKey(string path, bool wantPrivate)
    {
        var what = wantPrivate ? "private key" : "public key";
        if (!File.Exists(path)) throw PathErrors.FileMissing(path, char.ToUpperInvariant(what[0]) + what[1..]);
        if (new FileInfo(path).Length > MaxSignatureBytes) throw new VarSharpException($"{path} is too large to be a {what} file.");
        var pem = File.ReadAllText(path);
        bool isPrivate = pem.Contains("PRIVATE KEY-----", StringComparison.Ordinal);
        if (isPrivate != wantPrivate)
            throw new VarSharpException(wantPrivate
                ? $"{path} holds no private key; sign with the .key file that `varsharp keygen` wrote."
                : $"{path} is a private key; trust the .pub file instead (and keep the .key file secret).");
        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(pem);
            if (key.KeySize != 256) throw new VarSharpException($"{path} is a {key.KeySize}-bit key; bundle signatures use ECDSA P-256.");
            return key;
        }
        catch (ArgumentException)
        {
            key.Dispose();
            throw new VarSharpException($"{path} is not a PEM-encoded ECDSA {what}.");
        }
        catch (CryptographicException)
        {
            key.Dispose();
            throw new VarSharpException($"{path} is not a PEM-encoded ECDSA {what}.");
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }
}
