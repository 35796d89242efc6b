using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using VarSharp.Checkpoints;
using VarSharp.Sampling;
using VarSharp.Tests.Cli;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Checkpoints;

/// <summary>Signed bundles: who made a bundle, which the manifest alone cannot say.</summary>
public sealed class BundleSignatureTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    private (string Bundle, string Key, BundleTrust Trust) SignedBundle()
    {
        var bundle = TinyModels.WriteBundle(_temp.File("bundle"));
        BundleSignature.CreateKeyPair(_temp.File("team"));
        BundleSignature.Sign(bundle, _temp.File("team.key"));
        return (bundle, _temp.File("team.key"), BundleTrust.Load([_temp.File("team.pub")]));
    }

    private static ModelBundleProblem Problem(Action a) => Assert.Throws<ModelBundleException>(a).Problem;

    [Fact]
    public void ASignedBundleVerifiesAndLoadsUnderItsKey()
    {
        var (bundle, _, trust) = SignedBundle();
        var info = BundleSignature.Verify(bundle, trust);
        Assert.Equal(trust.KeyIds.Single(), info.KeyId);
        Assert.Equal(info.KeyId, BundleSignature.SignedBy(bundle));
        // The signature file is not an "extra file" to the manifest check, and loading without trust still works.
        ModelBundle.Verify(bundle);
        using (VarPipeline.Load(bundle)) { }
        using var pipe = VarPipeline.Load(bundle, trust: trust);
        Assert.Equal(5, pipe.NumClasses);
    }

    [Fact]
    public void ReplacedWeightsWithARecomputedManifestAreCaughtByTheSignature()
    {
        var (bundle, _, trust) = SignedBundle();
        // What an attacker with write access can do: swap the weights and write a manifest that matches them.
        TinyModels.WriteBundle(_temp.File("other"), seed: 99);
        File.Copy(Path.Combine(_temp.File("other"), "model.safetensors"), Path.Combine(bundle, "model.safetensors"), overwrite: true);
        File.Copy(Path.Combine(_temp.File("other"), "manifest.json"), Path.Combine(bundle, "manifest.json"), overwrite: true);
        ModelBundle.Verify(bundle);   // the manifest alone is satisfied
        var e = Assert.Throws<ModelBundleException>(() => BundleSignature.Verify(bundle, trust));
        Assert.Equal(ModelBundleProblem.SignatureInvalid, e.Problem);
        Assert.EndsWith("does not match its manifest, so the manifest was altered after signing.", e.Message);
        Assert.Equal(ModelBundleProblem.SignatureInvalid, Problem(() => VarPipeline.Load(bundle, trust: trust)));
    }

    [Fact]
    public void AFileChangedUnderASignedManifestFailsItsDigest()
    {
        var (bundle, _, trust) = SignedBundle();
        var config = Path.Combine(bundle, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"depth\": 2", "\"depth\":  2"));
        Assert.Equal(ModelBundleProblem.SizeMismatch, Problem(() => BundleSignature.Verify(bundle, trust)));
    }

    [Fact]
    public void UntrustedUnsignedAndPlainFoldersAreRefused()
    {
        var (bundle, _, _) = SignedBundle();
        BundleSignature.CreateKeyPair(_temp.File("stranger"));
        var stranger = BundleTrust.Load([_temp.File("stranger.pub")]);
        var e = Assert.Throws<ModelBundleException>(() => BundleSignature.Verify(bundle, stranger));
        Assert.Equal(ModelBundleProblem.UntrustedKey, e.Problem);
        Assert.Contains($"which is not among the trusted keys ({stranger.KeyIds.Single()})", e.Message);

        var unsigned = TinyModels.WriteBundle(_temp.File("unsigned"));
        Assert.Equal(ModelBundleProblem.SignatureMissing, Problem(() => BundleSignature.Verify(unsigned, stranger)));
        Assert.Null(BundleSignature.SignedBy(unsigned));
        var plain = TinyModels.WriteFolder(_temp.File("plain"));
        Assert.Equal(ModelBundleProblem.ManifestMissing, Problem(() => VarPipeline.Load(plain, trust: stranger)));
    }

    [Theory]
    [InlineData("not json", "it is not JSON")]
    [InlineData("""{"format": "varsharp-signature\ud800", "algorithm": "ecdsa-p256-sha256", "key_id": "KEY", "signature": "AA=="}""", "unpaired surrogate")]
    [InlineData("""{"format": "varsharp-signature", "algorithm": "rsa", "key_id": "0123456789abcdef", "signature": "AA=="}""", "\"algorithm\" is not \"ecdsa-p256-sha256\"")]
    [InlineData("""{"format": "varsharp-signature", "algorithm": "ecdsa-p256-sha256", "key_id": "xyz", "signature": "AA=="}""", "\"key_id\" is not 16 hex digits")]
    [InlineData("""{"format": "varsharp-signature", "algorithm": "ecdsa-p256-sha256", "key_id": "KEY", "signature": "%%%"}""", "\"signature\" is not base64")]
    [InlineData("""{"format": "varsharp-signature", "algorithm": "ecdsa-p256-sha256", "key_id": "KEY", "signature": "AAAA"}""", "does not match its manifest")]
    public void AMalformedOrForgedSignatureFileIsRefused(string content, string expected)
    {
        var (bundle, _, trust) = SignedBundle();
        File.WriteAllText(Path.Combine(bundle, BundleSignature.FileName), content.Replace("KEY", trust.KeyIds.Single()));
        var e = Assert.Throws<ModelBundleException>(() => BundleSignature.Verify(bundle, trust));
        Assert.Equal(ModelBundleProblem.SignatureInvalid, e.Problem);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void OnlyAPlainFileCountsAsASignatureOrAManifest()
    {
        var (bundle, _, trust) = SignedBundle();
        var sig = Path.Combine(bundle, BundleSignature.FileName);
        // A link to an endless device would be read until memory runs out; it is refused unread.
        File.Delete(sig);
        File.CreateSymbolicLink(sig, "/dev/zero");
        var e = Assert.Throws<ModelBundleException>(() => BundleSignature.Verify(bundle, trust));
        Assert.Equal(ModelBundleProblem.SignatureInvalid, e.Problem);
        Assert.Contains("it is a symbolic link, not a plain file", e.Message);
        Assert.Equal(ModelBundleProblem.ExtraFile, Problem(() => ModelBundle.Verify(bundle)));

        // A folder named manifest.sig is no signature: an unsigned bundle with one is an altered bundle.
        File.Delete(sig);
        Directory.CreateDirectory(sig);
        File.WriteAllText(Path.Combine(sig, "payload"), "x");
        Assert.Equal(ModelBundleProblem.ExtraFile, Problem(() => ModelBundle.Verify(bundle)));
        Directory.Delete(sig, recursive: true);

        File.WriteAllBytes(Path.Combine(bundle, ModelBundle.ManifestFileName), []);
        Assert.Contains("it is empty", Assert.Throws<ModelBundleException>(() => ModelBundle.Verify(bundle)).Message);
    }

    [Fact]
    public void AnAlteredBundleIsNeverSigned()
    {
        var bundle = TinyModels.WriteBundle(_temp.File("bundle"));
        BundleSignature.CreateKeyPair(_temp.File("team"));
        using (var f = File.OpenWrite(Path.Combine(bundle, "model.safetensors")))
        {
            f.Seek(-1, SeekOrigin.End);
            f.WriteByte(0x5A);
        }
        Assert.Equal(ModelBundleProblem.DigestMismatch, Problem(() => BundleSignature.Sign(bundle, _temp.File("team.key"))));
        Assert.False(File.Exists(Path.Combine(bundle, BundleSignature.FileName)));
    }

    [Fact]
    public void KeysAreOwnerOnlyNeverOverwrittenAndNotMixedUp()
    {
        var id = BundleSignature.CreateKeyPair(_temp.File("k"));
        if (!OperatingSystem.IsWindows())   // this project's machines are Linux; Windows has no such mode bits
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(_temp.File("k.key")));
        using (var pub = ECDsa.Create())
        {
            pub.ImportFromPem(File.ReadAllText(_temp.File("k.pub")));
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(pub.ExportSubjectPublicKeyInfo()))[..16], id);
        }
        var before = File.ReadAllBytes(_temp.File("k.key"));
        Assert.EndsWith("already exists; keys are never overwritten, choose another path.",
            Assert.Throws<VarSharpException>(() => BundleSignature.CreateKeyPair(_temp.File("k"))).Message);
        Assert.Equal(before, File.ReadAllBytes(_temp.File("k.key")));

        var bundle = TinyModels.WriteBundle(_temp.File("bundle"));
        Assert.StartsWith($"{_temp.File("k.pub")} holds no private key",
            Assert.Throws<VarSharpException>(() => BundleSignature.Sign(bundle, _temp.File("k.pub"))).Message);
        Assert.StartsWith($"{_temp.File("k.key")} is a private key",
            Assert.Throws<VarSharpException>(() => BundleTrust.Load([_temp.File("k.key")])).Message);
        File.WriteAllText(_temp.File("junk.pub"), "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n");
        Assert.Equal($"{_temp.File("junk.pub")} is not a PEM-encoded ECDSA public key.",
            Assert.Throws<VarSharpException>(() => BundleTrust.Load([_temp.File("junk.pub")])).Message);
        using (var rsa = RSA.Create(2048))
            File.WriteAllText(_temp.File("rsa.pub"), rsa.ExportSubjectPublicKeyInfoPem());
        Assert.Equal($"{_temp.File("rsa.pub")} is not a PEM-encoded ECDSA public key.",
            Assert.Throws<VarSharpException>(() => BundleTrust.Load([_temp.File("rsa.pub")])).Message);
    }

    [Fact]
    public void TheCliSignsVerifiesAndRefusesInOneSentence()
    {
        var bundle = TinyModels.WriteBundle(_temp.File("bundle"));
        Assert.Equal(0, CliRun.Of("keygen", "-o", _temp.File("team")).ExitCode);
        // A folder is not a key name (it would make hidden ".key" and ".pub" files).
        foreach (var folder in new[] { _temp.Path + "/", _temp.Path })
        {
            var named = CliRun.Of("keygen", "-o", folder);
            Assert.Equal(1, named.ExitCode);
            Assert.Contains("names a folder, not a key", named.Error);
        }
        Assert.False(File.Exists(Path.Combine(_temp.Path, ".key")));
        var unsigned = CliRun.Of("verify", "-m", bundle);
        Assert.Equal(0, unsigned.ExitCode);
        Assert.EndsWith("files match their manifest (SHA-256 and length); not signed", unsigned.Output.TrimEnd());
        Assert.Equal(1, CliRun.Of("verify", "-m", bundle, "--trust", _temp.File("team.pub")).ExitCode);

        Assert.Equal(0, CliRun.Of("sign", "-m", bundle, "-k", _temp.File("team.key")).ExitCode);
        var ok = CliRun.Of("verify", "-m", bundle, "--trust", _temp.File("team.pub"));
        Assert.Equal(0, ok.ExitCode);
        Assert.Contains("the manifest is signed by trusted key", ok.Output);
        var sample = CliRun.Of("sample", "-m", bundle, "--trust", _temp.File("team.pub"), "--class", "1", "-o", _temp.File("out"));
        Assert.True(sample.ExitCode == 0, sample.Error);

        // Giving the bundle new settings drops the signature, and says so.
        var recommend = CliRun.Of("recommend", "-m", bundle, "--cfg", "2");
        Assert.Contains("no longer applies and was removed", recommend.Output);
        var refused = CliRun.Of("sample", "-m", bundle, "--trust", _temp.File("team.pub"), "--class", "1", "-o", _temp.File("out2"));
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal($"error: Model bundle {bundle} has no manifest.sig, so it is not signed.", refused.Error.TrimEnd());
        Assert.False(Directory.Exists(_temp.File("out2")));

        var serve = CliRun.Of("serve", "-m", "tiny=" + bundle, "--trust", _temp.File("team.pub"), "--urls", "http://127.0.0.1:0");
        Assert.Equal(1, serve.ExitCode);
        Assert.Equal($"error: cannot serve model 'tiny': Model bundle {bundle} has no manifest.sig, so it is not signed.", serve.Error.TrimEnd());
    }

    [Fact]
    public void EveryLoaderHonoursTrust()
    {
        var (bundle, _, trust) = SignedBundle();
        var unsigned = TinyModels.WriteBundle(_temp.File("unsigned"));
        using (ModelFolder.LoadTokenizer(bundle, trust: trust)) { }
        using (ModelFolder.LoadTransformer(bundle, trust: trust)) { }
        Assert.Equal(ModelBundleProblem.SignatureMissing, Problem(() => ModelFolder.LoadTokenizer(unsigned, trust: trust)));
        Assert.Equal(ModelBundleProblem.SignatureMissing, Problem(() => ModelFolder.LoadTransformer(unsigned, trust: trust)));

        var image = TinyModelFolder.WritePng(_temp.File("in.png"), 8, 3);
        var ok = CliRun.Of("reconstruct", "-m", bundle, "--trust", _temp.File("team.pub"), "-i", image, "-o", _temp.File("r.png"));
        Assert.True(ok.ExitCode == 0, ok.Error);
        var refused = CliRun.Of("tokenize", "-m", unsigned, "--trust", _temp.File("team.pub"), "-i", image);
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal($"error: Model bundle {unsigned} has no manifest.sig, so it is not signed.", refused.Error.TrimEnd());

        // Fine-tuning a tokenizer: the --init-from bundle, before anything of it is read.
        var data = TinyData.WriteIdxFolder(_temp.File("data"));
        string[] Tune(string from, string run) => ["train-tokenizer", "--init-from", from, "--trust", _temp.File("team.pub"), "--data", data,
            "--steps", "1", "--batch-size", "4", "--eval-images", "0", "--out", _temp.File(run)];
        var untrusted = CliRun.Of(Tune(unsigned, "run-unsigned"));
        Assert.Equal(1, untrusted.ExitCode);
        Assert.Equal($"error: Model bundle {unsigned} has no manifest.sig, so it is not signed.", untrusted.Error.TrimEnd());
        Assert.False(Directory.Exists(_temp.File("run-unsigned")));
        var tuned = CliRun.Of(Tune(bundle, "run-signed"));
        Assert.True(tuned.ExitCode == 0, tuned.Error);
    }

    [Fact]
    public async Task TheServerSaysHowEachModelWasVerified()
    {
        var (bundle, _, trust) = SignedBundle();
        var id = trust.KeyIds.Single();
        foreach (var (withTrust, check) in new[] { (true, "signature"), (false, "manifest") })
        {
            using var server = VarSharp.Tests.Web.VarServerFactory.ForModel(bundle, o => o with { Trust = withTrust ? trust : null });
            using var client = server.CreateClient();
            var body = System.Text.Json.JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement;
            var integrity = body.GetProperty("models")[0].GetProperty("integrity");
            Assert.Equal(check, integrity.GetProperty("check").GetString());
            Assert.Equal(id, integrity.GetProperty("signed_by").GetString());
        }
    }

    [Fact]
    public void TrainingRefusesAnUntrustedTokenizerBeforeWritingAnything()
    {
        var tokenizer = TinyModels.WriteFolder(_temp.File("plain"));
        BundleSignature.CreateKeyPair(_temp.File("team"));
        var run = CliRun.Of("train", "--tokenizer", tokenizer, "--trust", _temp.File("team.pub"), "--out", _temp.File("run"), "--steps", "1");
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"error: Model bundle {tokenizer} has no manifest.json, so its files cannot be verified.", run.Error.TrimEnd());
        Assert.False(Directory.Exists(_temp.File("run")));
    }

    [Fact]
    public void TrustNeedsABundleNotLooseFiles()
    {
        var folder = TinyModels.WriteFolder(_temp.File("plain"));
        BundleSignature.CreateKeyPair(_temp.File("team"));
        var run = CliRun.Of("sample", "--config", Path.Combine(folder, "config.json"), "--weights", Path.Combine(folder, "model.safetensors"),
            "--trust", _temp.File("team.pub"), "-o", _temp.File("out"));
        Assert.Equal(1, run.ExitCode);
        Assert.Equal("error: --trust checks a signed bundle, so name the model with --model DIR.", run.Error.TrimEnd());
    }
}
