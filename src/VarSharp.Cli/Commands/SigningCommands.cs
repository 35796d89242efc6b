using System.CommandLine;
using VarSharp.Checkpoints;
using VarSharp.Training;

namespace VarSharp.Cli.Commands;

/// <summary>
/// `keygen`, `sign` and `verify`: who made a bundle, on top of the manifest's what. `sample`, `bench` and `serve` take
/// `--trust KEY.pub` to load only bundles that a trusted key signed.
/// </summary>
internal static class SigningCommands
{
    public static Command KeyGen()
    {
        var output = new Option<string>("--out", "-o") { Description = "Path of the key pair without extension: writes PATH.key (private, owner-only) and PATH.pub", Required = true };
        var command = new Command("keygen", "Create an ECDSA P-256 key pair for signing bundles") { output };
        command.SetAction(parse =>
        {
            var path = parse.GetRequiredValue(output);
            var id = BundleSignature.CreateKeyPair(path);
            parse.InvocationConfiguration.Output.WriteLine($"key {id}: private {path}.key (keep it secret), public {path}.pub (give it to whoever loads your bundles)");
            return 0;
        });
        return command;
    }

    public static Command Sign()
    {
        var model = new Option<string>("--model", "-m") { Description = "Bundle to sign (its manifest is verified first)", Required = true };
        var key = new Option<string>("--key", "-k") { Description = "Private key file from `varsharp keygen` (PATH.key)", Required = true };
        var command = new Command("sign", "Sign a bundle's manifest (writes manifest.sig); loaders given --trust accept only signed bundles") { model, key };
        command.SetAction(parse =>
        {
            var dir = parse.GetRequiredValue(model);
            var info = BundleSignature.Sign(dir, parse.GetRequiredValue(key));
            parse.InvocationConfiguration.Output.WriteLine($"signed {dir} with key {info.KeyId}: {Path.Combine(dir, BundleSignature.FileName)}");
            return 0;
        });
        return command;
    }

    public static Command Verify()
    {
        var model = new Option<string>("--model", "-m") { Description = "Bundle to verify, or a training checkpoint (RUN/checkpoints/step-N: its model bundle and train state)", Required = true };
        var trust = TrustOption.Create("Also require a signature by this public key (repeatable)");
        var command = new Command("verify", "Check a bundle's files against its manifest and, with --trust, its signature; exit 1 if anything fails") { model, trust };
        command.SetAction(parse =>
        {
            var dir = parse.GetRequiredValue(model);
            var output = parse.InvocationConfiguration.Output;
            if (CheckpointWriter.IsCheckpoint(dir))
            {
                output.WriteLine($"{dir}: a training checkpoint; {VerifyTrainState(dir)}");
                dir = CheckpointWriter.ModelFolderOf(dir);
            }
            if (TrustOption.Of(parse.GetValue(trust)) is { } trusted)
            {
                var info = BundleSignature.Verify(dir, trusted);
                output.WriteLine($"{dir}: every file matches its manifest, and the manifest is signed by trusted key {info.KeyId} ({info.KeyPath})");
                return 0;
            }
            var manifest = ModelBundle.Verify(dir);
            var signer = BundleSignature.SignedBy(dir);
            output.WriteLine($"{dir}: {manifest.Files.Count} files match their manifest (SHA-256 and length)" +
                (signer is null ? "; not signed" : $"; signed by key {signer}, not checked: pass --trust KEY.pub to check it"));
            return 0;
        });
        return command;
    }

    /// <summary>Checks a checkpoint's train state against train_state.sha256; describes the result, throws on a mismatch.</summary>
    private static string VerifyTrainState(string checkpoint)
    {
        var path = CheckpointWriter.TrainStatePath(checkpoint);
        var recorded = CheckpointWriter.RecordedTrainStateDigest(checkpoint);
        if (recorded is null) return $"{CheckpointWriter.TrainStateFile} has no {CheckpointWriter.TrainStateDigestFile} (written before VarSharp 0.1.0), so it cannot be verified";
        var actual = FileDigest.Sha256(path);
        if (actual != recorded) throw CheckpointWriter.TrainStateAltered(path, actual, recorded);
        return $"{CheckpointWriter.TrainStateFile} matches {CheckpointWriter.TrainStateDigestFile}";
    }
}
